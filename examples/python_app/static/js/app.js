// python_app's page script: asks /api/greeting (JSON made from the Greeting proto message).
"use strict";

(function () {
  const form = document.getElementById("greet");
  const out = document.getElementById("greeting");
  if (!form || !out) {
    return;
  }
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const name = new FormData(form).get("name") || "world";
    const response = await fetch("/api/greeting?name=" + encodeURIComponent(name), {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      out.textContent = "Error " + response.status;
      return;
    }
    const greeting = await response.json();
    out.textContent = greeting.message + " (served by " + greeting.service + " at " + greeting.servedAt + ")";
  });
})();
