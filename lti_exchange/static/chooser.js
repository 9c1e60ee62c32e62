/* The deep-linking chooser: typing an id selects "Another assignment id", so what is sent is
   always the one visible choice (the form works without this script as well). */
(function () {
  "use strict";
  var other = document.getElementById("other-id");
  var radio = document.getElementById("choice-other");
  if (!other || !radio) { return; }
  other.addEventListener("input", function () { if (other.value) { radio.checked = true; } });
  radio.addEventListener("change", function () { if (radio.checked) { other.focus(); } });
})();
