/* The deep-linking chooser: typing an id selects "Another assignment id", so what is sent is
   always the one visible choice; the maximum score follows the chosen assignment's points
   until the person types a score (the form works without this script as well: the server
   then replaces an untouched pre-fill of another assignment with the chosen one's points). */
(function () {
  "use strict";
  var other = document.getElementById("other-id");
  var radio = document.getElementById("choice-other");
  var score = document.getElementById("max-score");
  var scoreFor = document.getElementById("max-score-for");
  if (!other || !radio) { return; }
  other.addEventListener("input", function () { if (other.value) { radio.checked = true; } });
  radio.addEventListener("change", function () { if (radio.checked) { other.focus(); } });
  if (!score || !scoreFor) { return; }
  function typedNow() { typed = true; scoreFor.value = ""; }
  /* a score typed before this script ran (a slow page) counts as typed too */
  var typed = false;
  if (score.value !== score.defaultValue) { typedNow(); }
  score.addEventListener("input", typedNow);
  var choices = document.querySelectorAll('input[name="assignment_id"]');
  Array.prototype.forEach.call(choices, function (choice) {
    choice.addEventListener("change", function () {
      if (typed || !choice.checked) { return; }
      var points = choice.getAttribute("data-max-score") || "";
      score.value = points;  /* unknown points: empty, as the page shows for such a choice */
      scoreFor.value = points ? choice.value : "";
    });
  });
})();
