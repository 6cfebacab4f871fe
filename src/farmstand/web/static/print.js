// Print buttons (pick list, packing slips): hidden until this script runs, then they open the
// browser's print dialog. Without scripts the page says how to print instead (<noscript>).
for (const button of document.querySelectorAll("[data-print]")) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
