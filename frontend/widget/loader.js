// Support chat for any site: a launcher button, and the chat itself in an iframe from the gateway.
// This runs in someone else's page, so it defines no globals and sets styles through the CSSOM
// (element.style), which a strict host CSP allows where style attributes and <style> are refused.
(() => {
  const script = document.currentScript;
  const channel = script && script.dataset.channel;
  // Twice on one page (a second tag, a re-run by a SPA router): one launcher is enough.
  if (!channel || document.getElementById('support-inbox-launcher')) return;
  // The frame and its API live where this file came from, whatever page included it.
  const GATEWAY = new URL(script.src).origin;
  const identity = script.dataset.identity || null;
  const phone = window.matchMedia('(max-width: 479.98px)');
  let frame = null;
  let open = false;
  const button = document.createElement('button');
  button.type = 'button';
  button.id = 'support-inbox-launcher';
  button.textContent = 'Chat with us';
  button.setAttribute('aria-controls', 'support-inbox-chat');
  // `all: initial` first, so the host's own button rules cannot restyle or hide the launcher.
  button.style.all = 'initial';
  Object.assign(button.style, {
    position: 'fixed', right: '20px', bottom: '20px', zIndex: '2147483000', boxSizing: 'border-box',
    padding: '12px 20px', borderRadius: '999px', background: '#2d5bc9', color: '#ffffff',
    font: '600 15px/1.2 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
    cursor: 'pointer', boxShadow: '0 4px 16px rgb(16 24 40 / 25%)', outlineOffset: '3px',
  });
  // :focus-visible cannot be expressed inline, so the focus ring follows it by hand.
  button.addEventListener('focus', () => {
    button.style.outline = button.matches(':focus-visible') ? '3px solid #1c2330' : 'none';
  });
  button.addEventListener('blur', () => { button.style.outline = 'none'; });
  button.addEventListener('click', () => toggle(!open));
  function layout() {
    button.setAttribute('aria-expanded', String(open));
    if (!frame) return;
    const full = phone.matches;
    Object.assign(frame.style, full
      ? { top: '0', left: '0', right: '0', bottom: '0', width: '100%', height: '100%', borderRadius: '0' }
      : { top: 'auto', left: 'auto', right: '20px', bottom: '84px', width: 'min(380px, calc(100vw - 40px))',
          height: 'min(600px, calc(100vh - 104px))', borderRadius: '12px' });
    frame.style.display = open ? 'block' : 'none';
    // Full screen covers the launcher; the frame's own Close button takes over.
    button.style.display = open && full ? 'none' : 'inline-block';
  }
  function toggle(next) {
    // Created on first open: a visitor who never opens the chat costs the gateway nothing.
    if (next && !frame) {
      frame = document.createElement('iframe');
      frame.id = 'support-inbox-chat';
      frame.title = 'Support chat';
      frame.src = `${GATEWAY}/widget/frame?channel=${encodeURIComponent(channel)}`;
      frame.style.all = 'initial';
      Object.assign(frame.style, {
        position: 'fixed', zIndex: '2147483000', border: '0', background: '#ffffff',
        boxShadow: '0 8px 32px rgb(16 24 40 / 25%)', colorScheme: 'normal',
      });
      document.body.append(frame);
    }
    const focusWasInside = document.activeElement === frame;
    open = next;
    layout();
    if (open) frame.focus();
    else if (focusWasInside) button.focus();
  }
  window.addEventListener('message', (event) => {
    if (!frame || event.origin !== GATEWAY || event.source !== frame.contentWindow) return;
    const type = event.data && event.data.type;
    // Answered even without an identity, so the frame need not wait to find out there is none.
    const reply = { type: 'support-inbox:identity', identity };
    if (type === 'support-inbox:ready') event.source.postMessage(reply, GATEWAY);
    else if (type === 'support-inbox:close') toggle(false);
  });
  phone.addEventListener('change', layout);
  layout();
  // An async script in <head> can run before <body> exists.
  if (document.body) document.body.append(button);
  else document.addEventListener('DOMContentLoaded', () => document.body.append(button));
})();
