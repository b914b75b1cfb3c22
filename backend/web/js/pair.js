// /pair: exchange a one-time pairing code for this browser's session cookie (set by the server,
// HttpOnly). /pair?code=… (the one-time link) claims at once; the code leaves the address bar.
import { ApiError, api } from './api.js';

const form = document.getElementById('pair-form');
const input = document.getElementById('pair-code');
const statusEl = document.getElementById('pair-status');

async function claim(code) {
  statusEl.textContent = 'Pairing…';
  statusEl.dataset.state = 'pending';
  try {
    await api('/api/pairing/claim', { method: 'POST', json: { code } });
    statusEl.dataset.state = 'paired';
    statusEl.innerHTML = 'Paired. <a href="/">Open the library</a>.';
  } catch (error) {
    statusEl.dataset.state = 'failed';
    statusEl.textContent = error instanceof ApiError ? error.message : `Pairing failed: ${error.message}`;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  claim(input.value);
});

const linkCode = new URLSearchParams(window.location.search).get('code');
if (linkCode) {
  input.value = linkCode;
  window.history.replaceState(null, '', '/pair');
  claim(linkCode);
}
