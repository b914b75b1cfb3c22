// Small DOM and formatting helpers shared by the library, item and viewer pages.
import { api, storedApiKey, storeApiKey } from './api.js';

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
  depth_video: 'RGB-D video',
  stereo: 'Stereo 3D',
  video_stereo: 'Stereo 3D video',
};

/** The server features (GET /api/config "features") each task needs, all of them. */
export const TASK_FEATURES = {
  depth: ['depth'],
  cutout: ['background_removal'],
  video_depth: ['experimental_video', 'depth'],
  video_cutout: ['experimental_video', 'background_removal'],
  depth_video: ['experimental_video', 'depth', 'depth_video'],
  stereo: ['stereo'],
  video_stereo: ['experimental_video', 'stereo'],
};

export const FEATURE_LABELS = {
  depth: 'Depth maps',
  background_removal: 'Background removal',
  experimental_video: 'Video processing (experimental)',
  depth_video: 'RGB-D videos',
  stereo: 'Stereo 3D exports',
};

export const ACTIVE_JOB_STATES = new Set(['pending', 'queued', 'processing']);

export function taskEnabled(task, features) {
  // A task this page does not know yet counts as off: better "skipped" than a wrong "waiting".
  return Boolean(features && TASK_FEATURES[task]) && TASK_FEATURES[task].every((name) => features[name]);
}

/** 0..1 when the job reports a total, otherwise null (indeterminate). */
export function jobFraction(job) {
  const progress = job.progress || {};
  if (job.status === 'completed') return 1;
  if (!progress.total) return null;
  return Math.max(0, Math.min(1, progress.done / progress.total));
}

/**
 * A job's state in a user's words: "queued, 2 ahead", "failed: <reason>", "skipped: feature off", or
 * "waiting to be queued" for work skipped while its feature was off that can run now (features
 * from /api/config; without them a skipped job just says skipped).
 */
export function jobSummary(job, features = null) {
  const progress = job.progress || {};
  switch (job.status) {
    case 'processing': {
      const fraction = jobFraction(job);
      const stage = progress.stage ? `${progress.stage} ` : '';
      return fraction === null ? `${stage}…` : `${stage}${Math.round(fraction * 100)}%`;
    }
    case 'queued':
      if (job.jobs_ahead === null || job.jobs_ahead === undefined) return 'queued';
      return job.jobs_ahead === 0 ? 'queued, next in line' : `queued, ${job.jobs_ahead} ahead`;
    case 'pending':
      return 'waiting for the job queue';
    case 'failed':
      return job.error ? `failed: ${job.error}` : 'failed';
    case 'skipped':
      if (features && taskEnabled(job.task, features)) return 'waiting to be queued (the feature is on now)';
      return 'skipped: feature off';
    default:
      return job.status;
  }
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

/** The page's banner (#work-banner) says when work cannot run: no database, no queue, no worker. */
export async function checkWork() {
  const banner = document.getElementById('work-banner');
  if (!banner) return;
  let checks;
  try {
    const response = await fetch('/api/health', { headers: { Accept: 'application/json' } });
    checks = (await response.json()).checks || {};
  } catch {
    checks = { server: { ok: false } };
  }
  const problems = [];
  if (checks.server && !checks.server.ok) problems.push('The Parallax server is not answering.');
  if (checks.database && !checks.database.ok) {
    problems.push('The database is not reachable: the library cannot be shown or changed until it is back.');
  }
  if (checks.redis && !checks.redis.ok) {
    problems.push('The job queue (Redis) is not reachable: uploads are kept, and their processing starts once it is back.');
  } else if (checks.workers && !checks.workers.ok) {
    problems.push('No worker is running, so nothing is being processed: new work waits in the queue until a worker starts'
      + ' (python -m backend worker, or ./scripts/run).');
  }
  banner.dataset.problems = String(problems.length);
  banner.replaceChildren(...problems.map((text) => h('div', { class: 'notice notice-warn', role: 'status' }, text)));
  clearTimeout(checkWork.timer);
  checkWork.timer = setTimeout(checkWork, problems.length ? 5000 : 20000);
}

/** The header's link to the Immich server, when one is configured (shown without credentials). */
export async function showImmichLink(status = null) {
  const link = document.getElementById('immich-header-link');
  if (!link) return;
  let immich = status;
  if (!immich) {
    try {
      immich = await api('/api/immich/status');
    } catch {
      immich = null;
    }
  }
  const url = immich?.configured ? immich.public_url || immich.url : null;
  link.hidden = !url;
  if (url) link.href = url;
}
