(function () {
  "use strict";
  var config = JSON.parse(
    document.getElementById("lti-exchange-handoff-config").textContent
  );
  var statusEl = document.getElementById("lti-exchange-status");
  var allowed = config.allowed_origins || [];
  var busy = false;

  function show(text, state) {
    statusEl.textContent = text;
    statusEl.className = state || "";
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (eq > 0 && parts[i].slice(0, eq).trim() === name) {
        return decodeURIComponent(parts[i].slice(eq + 1).trim());
      }
    }
    return null;
  }

  function reply(event, ok, message, extra) {
    var answer = {
      type: "lti-exchange:stored",
      protocol: config.protocol,
      ok: ok,
      message: message,
      code: (extra && extra.code) || null
    };
    if (ok && extra) {
      answer.course_id = extra.course_id;
      answer.username = extra.username;
      answer.role = extra.role;
    }
    try {
      if (event.source) { event.source.postMessage(answer, event.origin); }
    } catch (e) { /* the exchange page has gone away */ }
  }

  function optionalString(value) {
    return value === undefined || value === null || typeof value === "string";
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!data || typeof data !== "object" || data.type !== "lti-exchange:tokens") { return; }
    if (allowed.indexOf(String(event.origin).toLowerCase()) === -1) {
      show("Ignored tokens sent by " + event.origin + ": this notebook server accepts tokens " +
           "only from " + (allowed.join(", ") || "no exchange (none is configured)") + ".",
           "error");
      // Tell the sender why (it waits for an answer), without naming the accepted exchange:
      // any page may send this message. The tokens are not used.
      reply(event, false, "This notebook server accepts tokens from another exchange URL, " +
            "not from " + event.origin, {code: "wrong_exchange"});
      return;
    }
    if (busy) { return; }
    if (typeof data.access_token !== "string" || typeof data.service_url !== "string" ||
        !optionalString(data.refresh_token)) {
      show("The exchange page sent an incomplete message.", "error");
      reply(event, false, "The message lacks access_token or service_url.",
            {code: "bad_request"});
      return;
    }
    busy = true;
    show("Checking your tokens with the exchange\u2026");
    var headers = {"Content-Type": "application/json", "Accept": "application/json"};
    var xsrf = config.xsrf_token || cookie("_xsrf");
    if (xsrf) { headers["X-XSRFToken"] = xsrf; }
    fetch(config.tokens_url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: headers,
      body: JSON.stringify({
        access_token: data.access_token,
        refresh_token: data.refresh_token || null,
        service_url: data.service_url
      })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return {status: response.status, body: body || {}};
      });
    }).then(function (result) {
      var body = result.body;
      if (result.status === 200 && body.stored) {
        var text = "Connected: course " + body.course_id + " as " + body.role +
                   " (" + body.username + "). You can close this window.";
        show(text, "ok");
        reply(event, true, text, body);
      } else {
        var message = body.message || ("HTTP " + result.status);
        if (result.status === 403) {
          message = "This notebook server did not accept the request (" + message +
                    "). Reload this page and try again.";
        }
        show("Your tokens were not stored: " + message, "error");
        reply(event, false, message, body);
      }
    }, function (error) {
      var message = "Cannot reach this notebook server (" + error + ").";
      show("Your tokens were not stored: " + message, "error");
      reply(event, false, message, {code: "network"});
    }).then(function () { busy = false; });
  });

  if (allowed.length === 0) {
    show("This notebook server does not know which exchange to accept tokens from " +
         "(set c.Exchange.service_url in nbgrader_config.py, or " +
         "c.LtiExchangeHandoff.allowed_origins). Use lti-exchange login instead.", "error");
    if (window.opener && window.opener !== window) {
      // Nothing secret: the page that opened this window learns why no "ready" comes.
      window.opener.postMessage({
        type: "lti-exchange:stored", protocol: config.protocol, ok: false, code: "no_exchange",
        message: "This notebook server has no exchange URL configured"
      }, "*");
    }
  } else if (window.opener && window.opener !== window) {
    show("Waiting for your tokens from the exchange page\u2026");
    window.opener.postMessage({type: "lti-exchange:ready", protocol: config.protocol}, "*");
  } else {
    show("Open this page with the button on the exchange's page after launching the " +
         "assignment from your LMS, or use lti-exchange login in a terminal.", "error");
  }
})();
