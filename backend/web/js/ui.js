// Small DOM and formatting helpers shared by the library, item and viewer pages.
import { storedApiKey, storeApiKey } from './api.js';

/** Create an element: h('a', {href: '/', class: 'x'}, 'text', childElement). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else element.setAttribute(name, value === true ? '' : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** The last path segment: /items/<id> and /viewer/<id> carry the media id there. */
export function idFromPath() {
  const parts = window.location.pathname.split('/').filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || '');
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '';
  const total = Math.round(seconds);
  const minutes = Math.floor(total / 60);
  return `${minutes}:${String(total % 60).padStart(2, '0')}`;
}

export function formatDate(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export const TASK_LABELS = {
  depth: 'Depth map',
  cutout: 'Cut-out',
  video_depth: 'Video depth',
  video_cutout: 'Video cut-out',
};

export const ACTIVE_JOB_STATES = new Set(['pending', 'queued', 'processing']);

/** 0..1 when the job reports a total, otherwise null (indeterminate). */
export function jobFraction(job) {
  const progress = job.progress || {};
  if (job.status === 'completed') return 1;
  if (!progress.total) return null;
  return Math.max(0, Math.min(1, progress.done / progress.total));
}

export function jobSummary(job) {
  const progress = job.progress || {};
  if (job.status === 'processing') {
    const fraction = jobFraction(job);
    const stage = progress.stage ? `${progress.stage} ` : '';
    return fraction === null ? `${stage}…` : `${stage}${Math.round(fraction * 100)}%`;
  }
  if (job.status === 'failed') return job.error ? `failed: ${job.error}` : 'failed';
  if (job.status === 'skipped') return job.skip_reason ? `skipped: ${job.skip_reason}` : 'skipped';
  return job.status;
}

/** A progress bar element; update it with setProgress(). */
export function progressBar() {
  return h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' },
    h('div', { class: 'progress-fill' }));
}

export function setProgress(bar, fraction) {
  const fill = bar.firstElementChild;
  if (fraction === null || fraction === undefined) {
    bar.classList.add('indeterminate');
    bar.removeAttribute('aria-valuenow');
    fill.style.width = '';
  } else {
    bar.classList.remove('indeterminate');
    bar.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
    fill.style.width = `${(fraction * 100).toFixed(1)}%`;
  }
}

/** The header's API-key button: shows whether a key is stored and lets the user set or clear it. */
export function wireApiKeyButton(button) {
  const refresh = () => {
    const hasKey = Boolean(storedApiKey());
    button.textContent = hasKey ? 'API key ✓' : 'API key';
    button.title = hasKey ? 'An API key is stored in this browser. Click to change or clear it.'
      : 'Set the API key this server asks for (stored in this browser only).';
  };
  button.addEventListener('click', () => {
    const key = window.prompt('API key (leave empty to clear):', storedApiKey());
    if (key === null) return;
    storeApiKey(key.trim());
    refresh();
    window.location.reload();
  });
  refresh();
}

/** Show a dismissible message in the page's #notice element. */
export function notify(message, kind = 'error') {
  const notice = document.getElementById('notice');
  if (!notice) return;
  notice.replaceChildren(h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', {}, message),
    h('button', { class: 'notice-close', type: 'button', 'aria-label': 'Dismiss', onclick: () => notice.replaceChildren() }, '×')));
}
