// Live updates: the server sends a `change` event (SSE) when the campaign's ledger rows move;
// each [data-fragment] section is then re-fetched, unless the operator is busy in it
// (focus inside, an open edit/reject form, or ticked boxes). A slow poll is the fallback.
(function () {
  for (const b of document.querySelectorAll("[data-dismiss]")) {
    b.addEventListener("click", function () { b.parentElement.remove(); });
  }
  const root = document.querySelector("[data-stream]");
  if (!root) return;
  let timer = null;
  let running = false;

  function busy(el) {
    const a = document.activeElement;
    return (a && a !== document.body && el.contains(a) && a.matches("input, select, textarea")) ||
      el.querySelector("details[open]") || el.querySelector("input[type=checkbox]:checked");
  }

  async function refresh() {
    if (running) return;
    running = true;
    try {
      for (const el of document.querySelectorAll("[data-fragment]")) {
        if (busy(el)) continue;
        const r = await fetch(el.dataset.fragment, { credentials: "same-origin" });
        if (r.status === 401) { location.href = "/login?expired=2&next=" + encodeURIComponent(location.pathname); return; }
        if (!r.ok) continue;
        const html = await r.text();
        if (!busy(el)) el.innerHTML = html;  // the operator may have started typing meanwhile
      }
      const img = document.querySelector("img[data-base]");
      const st = document.querySelector("[data-measured]");
      if (img && st && !img.src.endsWith("n=" + st.dataset.measured)) {
        img.src = img.dataset.base + "?n=" + st.dataset.measured;
      }
    } catch (e) { /* the server may be restarting; the next change or poll retries */ }
    finally { running = false; }
  }

  function soon() {
    if (timer) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 250);
  }

  if (window.EventSource) {
    const es = new EventSource(root.dataset.stream);
    es.addEventListener("change", soon);
  }
  document.addEventListener("cellpilot:refresh", refresh);
  setInterval(refresh, 15000);
})();
