// The admin UI's only script: copy buttons, confirmations, filters that submit themselves, and the model
// list's filter. Pages work without it; nothing here is inline, so the CSP allows no inline script.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 2000); };
  field.select();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(done, () => { document.execCommand("copy"); done(); });
  } else {
    document.execCommand("copy");
    done();
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) event.target.form.requestSubmit();
});

document.addEventListener("input", (event) => {
  const input = event.target;
  if (!input.dataset || !input.dataset.filter) return;
  const list = document.getElementById(input.dataset.filter);
  const wanted = input.value.trim().toLowerCase();
  for (const label of list.querySelectorAll("label")) {
    label.hidden = wanted !== "" && !label.textContent.toLowerCase().includes(wanted);
  }
});
