/* Dash 4's dcc.RadioItems renders role="listbox" with role="option" labels around native
   radio inputs (an unnamed listbox with nested interactive controls for screen readers).
   The public view puts each group in a <fieldset> with a <legend>, so the native radio
   semantics are the right ones: drop the ARIA roles that hide them, whenever React
   (re)renders a group. */
(function () {
  function fix(root) {
    root.querySelectorAll('.dash-radioitems[role="listbox"]').forEach(function (group) {
      group.removeAttribute("role");
      group.querySelectorAll('[role="option"]').forEach(function (option) {
        option.removeAttribute("role");
        option.removeAttribute("aria-selected");
      });
    });
  }
  new MutationObserver(function () { fix(document); })
    .observe(document.documentElement, {childList: true, subtree: true, attributes: true,
                                        attributeFilter: ["role"]});
})();
