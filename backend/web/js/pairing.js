// "Pair a headset" in the library's header: makes a one-time code (needs the API key, or a server
// without one) and shows it with the link to open in the headset's browser.
import { api } from './api.js';
import { h } from './ui.js';

function wirePairButton(button) {
  button.addEventListener('click', async () => {
    const panel = document.getElementById('pair-dialog') || document.body.appendChild(
      h('dialog', { id: 'pair-dialog', class: 'panel pair-dialog' }));
    panel.replaceChildren(h('p', {}, 'Making a code…'));
    if (!panel.open) panel.showModal();
    try {
      const { code, link, pairing } = await api('/api/pairing', { method: 'POST', json: { label: 'headset' } });
      const url = new URL(link, window.location.origin).href;
      const until = new Date(pairing.code_expires_at).toLocaleTimeString();
      panel.replaceChildren(
        h('h2', {}, 'Pair a headset'),
        h('p', {}, 'In the headset\'s browser open ', h('strong', {}, `${window.location.origin}/pair`),
          ' and type this code:'),
        h('p', { class: 'pair-code', id: 'pair-code-shown' }, code),
        h('p', { class: 'muted' }, 'Or open this one-time link there: ', h('code', {}, url)),
        h('p', { class: 'muted' }, `Works once, until ${until}.`),
        h('div', { class: 'button-row' }, h('button', { class: 'button', type: 'button', onclick: () => panel.close() }, 'Done')),
      );
    } catch (error) {
      panel.replaceChildren(h('p', {}, error.message),
        h('button', { class: 'button', type: 'button', onclick: () => panel.close() }, 'Close'));
    }
  });
}

const pairButton = document.getElementById('pair-button');
if (pairButton) wirePairButton(pairButton);
