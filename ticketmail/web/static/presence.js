// Who else has this desk ticket open (SPEC 9.1), kept up to date with JavaScript: every few
// seconds, and whenever the answer field turns from empty to holding text or back, the page
// tells the desk that this agent still has it open and whether the answer field holds text;
// the answer names the other agents, shown as text (never parsed as HTML). Without
// JavaScript the page shows them as of loading. A refused heartbeat (logged out, ticket
// gone) ends the updates.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var shown = document.getElementById("presence");
  var answer = document.getElementById("reply-body");
  var token = document.querySelector("input[name=csrf_token]");
  if (!shown || !answer || !token || !shown.dataset.url) {
    return;
  }
  var EVERY = 4000;
  var timer = null;
  var typing = null;

  function holdsText() {
    return answer.value.trim() !== "";
  }

  function beat() {
    typing = holdsText();
    var form = new FormData();
    form.append("csrf_token", token.value);
    form.append("typing", typing ? "1" : "0");
    fetch(shown.dataset.url, { method: "POST", body: new URLSearchParams(form),
                                credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (found) {
        var line = typeof found.line === "string" ? found.line : "";
        shown.textContent = line;
        shown.hidden = line === "";
      })
      .catch(function () {
        window.clearInterval(timer);
      });
  }

  answer.addEventListener("input", function () {
    if (holdsText() !== typing) {
      beat();
    }
  });
  timer = window.setInterval(beat, EVERY);
  beat();
});
