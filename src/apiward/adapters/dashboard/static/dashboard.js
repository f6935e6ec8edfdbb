// The dashboard's only script: copy buttons. Everything else works without JavaScript.
"use strict";
document.documentElement.classList.add("js");

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById("copy-status");
  field.focus();
  field.select();
  const done = (ok) => {
    const label = button.textContent;
    button.textContent = ok ? "Copied" : "Press Ctrl+C";
    if (status) status.textContent = ok ? "Copied to the clipboard." : "Selected: press Ctrl+C (⌘C) to copy.";
    setTimeout(() => { button.textContent = label; }, 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(() => done(true), () => done(false));
  } else {
    done(false);
  }
});
