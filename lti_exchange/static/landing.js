/* The landing page's one-click hand-off: open the notebook server's hand-off page
   (nbgrader_plugin/server_extension) in a new window, give it the tokens by postMessage when it
   says it is ready (to its origin only; never in a URL), and show its answer -- or, when it does
   not answer in time, what to check. Without JavaScript the page shows the manual steps. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("lti-exchange-handoff").textContent);
  var payload = JSON.parse(document.getElementById("lti-exchange-tokens").textContent);
  var handoffOrigin = new URL(config.handoff_url, window.location.href).origin;
  var button = document.getElementById("connect");
  var statusEl = document.getElementById("status");
  var next = document.getElementById("next");
  var manual = document.getElementById("manual");
  var child = null;
  var phase = "idle";  // idle -> opening -> sending -> done | failed
  var timer = null;
  var closedPoll = null;

  function show(text, state) {
    statusEl.textContent = text;
    statusEl.className = state ? "box " + state : "";
    statusEl.setAttribute("data-state", state || phase);
  }

  function stopWaiting() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (closedPoll) { clearInterval(closedPoll); closedPoll = null; }
  }

  function fail(text) {
    phase = "failed";
    stopWaiting();
    show(text + " You can also connect by hand below.", "error");
    manual.open = true;
    button.textContent = "Try again";
  }

  /* What to check for each refusal code of the hand-off (see handoff.js and store.py). */
  function advice(code) {
    if (code === "wrong_exchange" || code === "wrong_service" || code === "no_exchange") {
      return " Ask your instructor or the notebook server's administrator to set " +
        "c.Exchange.service_url = \"" + config.service_url + "\" in nbgrader_config.py.";
    }
    if (code === "service_unreachable" || code === "network") {
      return " Check that the notebook server can reach " + config.service_url + ".";
    }
    return "";
  }

  function waitFor(seconds, onTimeout) {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(onTimeout, seconds * 1000);
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!child || event.source !== child || !data || typeof data !== "object") { return; }
    if (event.origin !== handoffOrigin) {
      if (data.type === "lti-exchange:ready") {
        fail("The notebook server answered from an unexpected address (" + event.origin +
             ", expected " + handoffOrigin + "); tell your instructor.");
      }
      return;
    }
    if (data.type === "lti-exchange:ready" && (phase === "opening" || phase === "failed")) {
      // The hand-off page of the user's own notebook server is loaded: give it the tokens,
      // to the configured notebook origin only.
      phase = "sending";
      child.postMessage(payload, handoffOrigin);
      show("Sending your sign-in to the notebook server\u2026");
      waitFor(config.store_timeout, function () {
        fail("The notebook server did not confirm within " + config.store_timeout +
             " seconds. Look at the notebook server's window for its answer.");
      });
    } else if (data.type === "lti-exchange:stored") {
      if (data.ok) {
        phase = "done";
        stopWaiting();
        show("Done: your notebook server is connected to this course. Open the Assignments " +
             "tab to fetch and submit.", "ok");
        next.hidden = false;
        button.hidden = true;
        manual.open = false;
      } else {
        fail("The notebook server refused: " + (data.message || "no reason given") + "." +
             advice(data.code));
      }
    }
  });

  button.addEventListener("click", function () {
    child = window.open(config.handoff_url, "lti-exchange-handoff");
    if (!child) {
      fail("Your browser blocked the new window: allow pop-ups for this page and try again.");
      return;
    }
    phase = "opening";
    show("Opening your notebook server\u2026");
    waitFor(config.ready_timeout, function () {
      fail("Your notebook server did not answer within " + config.ready_timeout + " seconds. " +
           "Check that it is running (open " + config.notebook_url + " and sign in or start " +
           "it), that it has the lti-exchange extension (lti-exchange handoff enable), then " +
           "try again.");
    });
    if (closedPoll) { clearInterval(closedPoll); }
    closedPoll = setInterval(function () {
      if (child && child.closed && (phase === "opening" || phase === "sending")) {
        fail("The notebook server's window was closed before it answered.");
      }
    }, 500);
  });

  // JavaScript runs: offer the one-click connection, keep the manual steps folded away.
  button.hidden = false;
  manual.open = false;
})();
