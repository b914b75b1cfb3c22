// Item page: the original, its depth map and cut-out (or why there is none yet), downloads under
// meaningful names, the item's jobs with live progress and cancel / retry, and previous / next.
import { ApiError, api, mediaSource } from './api.js';
import {
  ACTIVE_JOB_STATES, FEATURE_LABELS, TASK_FEATURES, TASK_LABELS, checkWork, formatBytes, formatDate, formatDuration, h,
  idFromPath, jobFraction, jobSummary, notify, progressBar, setProgress, showImmichLink, taskEnabled, wireApiKeyButton,
} from './ui.js';

const POLL_INTERVAL_MS = 2000;
const mediaId = idFromPath();
const mediaPath = `/api/media/${encodeURIComponent(mediaId)}`;

// The result panels: which derived asset kinds each shows, and which tasks make them.
const PANELS = [
  { id: 'depth', title: 'depth map', kinds: ['depth', 'depth_frames'], tasks: ['depth', 'video_depth'] },
  { id: 'cutout', title: 'cut-out', kinds: ['cutout', 'cutout_video'], tasks: ['cutout', 'video_cutout'] },
];

const state = {
  config: null,
  item: null,
  jobs: [],
  assets: [],
  shown: {}, // panel id -> the asset version it shows; re-render a preview only when it changes
  pollTimer: null,
  originalShown: false,
};

async function load() {
  let detail;
  try {
    detail = await api(mediaPath);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      document.getElementById('item-title').textContent = 'Item not found';
      notify('This item does not exist (it may have been deleted).');
      return;
    }
    notify(`Could not load this item: ${error.message}`);
    schedulePoll(true);
    return;
  }
  state.item = detail.item;
  state.jobs = detail.jobs || [];
  state.assets = detail.assets || [];
  renderHeader();
  renderJobs();
  if (!state.originalShown) await renderOriginal();
  await Promise.all([...PANELS.map(renderPanel), renderMoreResults()]);
  renderDownloads();
  schedulePoll(state.jobs.some((job) => ACTIVE_JOB_STATES.has(job.status)));
}

function schedulePoll(active) {
  clearTimeout(state.pollTimer);
  if (active) state.pollTimer = setTimeout(load, POLL_INTERVAL_MS);
}

// ---------------------------------------------------------------- header, neighbours & details

function newest(rows) {
  return [...rows].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))[0];
}

function renderHeader() {
  const { item } = state;
  document.title = `${item.original_filename || item.id} — Parallax`;
  document.getElementById('item-title').textContent = item.original_filename || item.id;
  document.getElementById('item-meta').textContent = [
    item.kind,
    item.width && item.height ? `${item.width}×${item.height}` : null,
    item.kind === 'video' && item.duration ? formatDuration(item.duration) : null,
    formatBytes(item.size_bytes),
    item.captured_at ? `taken ${formatDate(item.captured_at)}` : null,
  ].filter(Boolean).join(' · ');

  const viewerLink = document.getElementById('viewer-link');
  viewerLink.href = `/viewer/${encodeURIComponent(item.id)}`;
  viewerLink.hidden = !state.assets.some((asset) => asset.kind === 'depth' || asset.kind === 'depth_frames');
  const immichLink = document.getElementById('immich-link');
  immichLink.hidden = !item.immich_url;
  if (item.immich_url) immichLink.href = item.immich_url;

  const details = {
    Status: item.status,
    Type: item.mime_type,
    Source: item.source === 'immich' ? `Immich (${item.immich_asset_id || ''})` : item.source,
    Size: formatBytes(item.size_bytes),
    Dimensions: item.width && item.height ? `${item.width}×${item.height}` : null,
    Duration: item.duration ? `${item.duration.toFixed(2)} s` : null,
    'Frame rate': item.fps ? `${Number(item.fps).toFixed(2)} fps` : null,
    Rotation: item.rotation ? `${item.rotation}°` : null,
    Captured: formatDate(item.captured_at),
    Added: formatDate(item.created_at),
    ID: item.id,
  };
  document.getElementById('details').replaceChildren(...Object.entries(details)
    .filter(([, value]) => value)
    .flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, String(value))]));
}

/** Previous (newer) and next (older) items in the library's order; arrow keys follow them too. */
async function loadNeighbours() {
  let around;
  try {
    around = await api(`${mediaPath}/neighbours`);
  } catch {
    return;
  }
  for (const [which, linkId] of [['newer', 'newer-link'], ['older', 'older-link']]) {
    const link = document.getElementById(linkId);
    const target = around[which];
    link.hidden = !target;
    if (target) {
      link.href = `/items/${encodeURIComponent(target.id)}`;
      link.setAttribute('aria-label', `${which === 'newer' ? 'Previous' : 'Next'}: ${target.original_filename}`);
    }
  }
}

function wireKeys() {
  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    if (['INPUT', 'TEXTAREA', 'SELECT', 'VIDEO'].includes(document.activeElement?.tagName)) return;
    const link = document.getElementById({ ArrowLeft: 'newer-link', ArrowRight: 'older-link' }[event.key] || '');
    if (link && !link.hidden) window.location.href = link.href;
  });
}

// ---------------------------------------------------------------- original

/** <img>/<video> for a URL, loaded through mediaSource (API key aware). */
async function mediaElement(url, { video = false, alt = '' } = {}) {
  const source = await mediaSource(url);
  if (video) return h('video', { src: source, controls: true, playsinline: true, preload: 'metadata', muted: true, loop: true });
  return h('img', { src: source, alt });
}

async function renderOriginal() {
  const { item } = state;
  state.originalShown = true;
  const frame = document.getElementById('original-frame');
  try {
    const element = await mediaElement(item.original_url || `${mediaPath}/original`,
      { video: item.kind === 'video', alt: item.original_filename || 'Original' });
    element.addEventListener('error', async () => {
      // Browsers cannot show HEIC, JPEG XL or TIFF: the server's upright preview stands in.
      if (item.kind === 'photo' && !element.dataset.fallback) {
        element.dataset.fallback = '1';
        element.src = await mediaSource(item.thumbnail_url);
      } else {
        frame.replaceChildren('This browser cannot display this file; use the download link.');
      }
    });
    frame.replaceChildren(element);
  } catch (error) {
    frame.replaceChildren(error.message);
  }
}

// ---------------------------------------------------------------- result panels

function featuresOff(task) {
  const off = (TASK_FEATURES[task] || []).filter((name) => !state.config?.features?.[name]);
  return off.map((name) => FEATURE_LABELS[name] || name).join(' and ');
}

/** Why a panel has no result (or why it is changing): a sentence, and an action where one helps. */
function panelStatus(panel, job, hasAsset) {
  if (!job) return hasAsset ? null : { text: `No ${panel.title} for this item.` };
  const features = state.config?.features;
  switch (job.status) {
    case 'completed':
      return hasAsset ? null : { text: `The ${panel.title} was made but its file is missing; make it again.`, action: 'reprocess' };
    case 'skipped':
      if (taskEnabled(job.task, features)) {
        return { text: 'Waiting: its feature was turned on after this item was added.', action: 'reprocess', label: 'Make it now' };
      }
      return { text: `Skipped: feature off (${featuresOff(job.task) || 'turned off on this server'}).` };
    case 'failed':
      return { text: `Failed: ${job.error || 'no reason was recorded'}`, action: 'retry', job };
    case 'cancelled':
      return { text: 'Cancelled.', action: 'retry', job };
    case 'processing':
      return { text: `${hasAsset ? 'Updating' : 'Working'}: ${jobSummary(job, features)}`, progress: job };
    case 'queued':
    case 'pending': {
      const text = jobSummary(job, features); // "queued, 2 ahead", "waiting for the job queue"
      return { text: `${hasAsset ? 'Updating: ' : ''}${text.charAt(0).toUpperCase()}${text.slice(1)}`, progress: job };
    }
    default:
      return { text: job.status };
  }
}

function statusActions(panel, status) {
  if (!status.action) return null;
  const label = status.label || (status.action === 'retry' ? 'Retry' : 'Make it again');
  const run = status.action === 'retry'
    ? () => jobAction(status.job, 'retry')
    : () => reprocess(panel.tasks.filter((task) => state.jobs.some((job) => job.task === task)));
  return h('button', { class: 'button button-small', type: 'button', dataset: { action: status.action }, onclick: run }, label);
}

async function renderPanel(panel) {
  const asset = newest(state.assets.filter((a) => panel.kinds.includes(a.kind)));
  const job = newest(state.jobs.filter((j) => panel.tasks.includes(j.task)));
  const status = panelStatus(panel, job, Boolean(asset));
  const statusEl = document.getElementById(`${panel.id}-status`);
  statusEl.dataset.state = job?.status || 'none';
  // Without a result the frame itself says why; with one, the line below says what is changing.
  statusEl.replaceChildren(...[
    status && asset ? h('span', {}, status.text) : null,
    status ? statusActions(panel, status) : null,
  ].filter(Boolean));
  if (status?.progress) {
    const bar = progressBar();
    setProgress(bar, job.status === 'processing' ? jobFraction(job) : null);
    statusEl.append(bar);
  }

  const version = asset ? `${asset.id}:${asset.created_at}` : `none:${status?.text}`;
  if (state.shown[panel.id] === version) return;
  state.shown[panel.id] = version;
  const frame = document.getElementById(`${panel.id}-frame`);
  const extra = document.getElementById(`${panel.id}-extra`);
  frame.classList.toggle('checkerboard', Boolean(asset) && panel.id === 'cutout'); // transparency shows as a checkerboard
  if (!asset) {
    frame.replaceChildren(h('span', { class: 'media-frame-empty' }, status?.text || ''));
    extra.replaceChildren();
    return;
  }
  extra.replaceChildren(
    [asset.model ? modelLabel(asset.model) : null, asset.variant || null,
      asset.metadata?.polarity ? `polarity ${asset.metadata.polarity.replace('_', ' ')}` : null,
      asset.width && asset.height ? `${asset.width}×${asset.height}` : null].filter(Boolean).join(' · '),
    h('br'),
    h('a', { class: 'result-download', href: asset.download_url, download: asset.download_name }, `Download ${asset.download_name}`));
  if (asset.kind === 'depth_frames') {
    await renderDepthFrames(frame, extra);
    return;
  }
  const isVideo = (asset.mime_type || '').startsWith('video/');
  try {
    const element = await mediaElement(asset.url, { video: isVideo, alt: `${panel.title} of ${state.item.original_filename}` });
    element.addEventListener('error', () => frame.replaceChildren('This browser cannot display this file; use the download link.'));
    frame.replaceChildren(element);
  } catch (error) {
    frame.replaceChildren(error.message);
  }
}

function modelLabel(model) {
  const parts = String(model).split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1];
}

/** A video's depth: one depth frame at a time, chosen with a slider over the manifest's frames. */
async function renderDepthFrames(frame, extra) {
  let manifest;
  try {
    manifest = await api(`${mediaPath}/depth/manifest`);
  } catch (error) {
    frame.replaceChildren(`Depth frames: ${error.message}`);
    return;
  }
  const image = h('img', { alt: 'Depth frame' });
  const label = h('span', { class: 'small muted' });
  const slider = h('input', { type: 'range', class: 'frame-slider', min: '0', max: String(manifest.frames.length - 1), value: '0', 'aria-label': 'Depth frame' });
  const show = async () => {
    const chosen = manifest.frames[Number(slider.value)];
    label.textContent = `frame ${chosen.index} of ${manifest.frames.length} · ${chosen.time.toFixed(2)} s`;
    try {
      image.src = await mediaSource(chosen.depth_url);
    } catch (error) {
      label.textContent = error.message;
    }
  };
  slider.addEventListener('input', show);
  frame.replaceChildren(image);
  extra.append(h('br'), slider, label,
    h('br'), `${manifest.frames.length} frames at ${Number(manifest.effective_fps || 0).toFixed(2)} fps`);
  await show();
}

/** Results of the other kinds (RGB-D video, stereo exports...): a preview and a download each. */
async function renderMoreResults() {
  const shownKinds = new Set(PANELS.flatMap((panel) => panel.kinds));
  const others = state.assets.filter((asset) => !shownKinds.has(asset.kind));
  const key = others.map((asset) => `${asset.id}:${asset.created_at}`).join('|');
  if (state.shown.more === key) return;
  state.shown.more = key;
  document.getElementById('more-results').hidden = !others.length;
  const tiles = await Promise.all(others.map(async (asset) => {
    const isVideo = (asset.mime_type || '').startsWith('video/');
    const isImage = (asset.mime_type || '').startsWith('image/');
    let preview;
    try {
      // Something a browser plays or shows as it is; anything else (a ZIP) by its preview picture.
      preview = isVideo || isImage
        ? await mediaElement(asset.url, { video: isVideo, alt: asset.download_name })
        : await mediaElement(asset.thumbnail_url, { alt: asset.download_name });
    } catch (error) {
      preview = h('span', {}, error.message);
    }
    return h('figure', { class: 'more-result', dataset: { kind: asset.kind } },
      h('div', { class: 'media-frame checkerboard' }, preview),
      h('figcaption', { class: 'small' },
        h('a', { href: asset.download_url, download: asset.download_name }, asset.download_name),
        ` · ${formatBytes(asset.size_bytes)}`));
  }));
  document.getElementById('more-list').replaceChildren(...tiles);
}

// ---------------------------------------------------------------- downloads

function renderDownloads() {
  const { item } = state;
  const links = [
    { label: 'Original', url: `${item.original_url}?download=1`, name: item.original_filename || '', size: item.size_bytes },
    ...[...state.assets].sort((a, b) => a.kind.localeCompare(b.kind)).map((asset) => ({
      label: asset.download_name, url: asset.download_url, name: asset.download_name, size: asset.size_bytes, kind: asset.kind,
    })),
  ];
  document.getElementById('downloads').replaceChildren(...links.map((link) =>
    h('li', { dataset: { kind: link.kind || 'original' } },
      h('a', { href: link.url, download: link.name }, link.label),
      h('span', { class: 'muted' }, formatBytes(link.size)))));
}

// ---------------------------------------------------------------- jobs

function renderJobs() {
  const list = document.getElementById('job-list');
  if (!state.jobs.length) {
    list.replaceChildren(h('li', { class: 'muted' }, 'No jobs for this item.'));
    return;
  }
  const features = state.config?.features;
  const jobs = [...state.jobs].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  list.replaceChildren(...jobs.map((job) => {
    const bar = progressBar();
    bar.hidden = !ACTIVE_JOB_STATES.has(job.status);
    setProgress(bar, job.status === 'processing' ? jobFraction(job) : job.status === 'completed' ? 1 : 0);
    const actions = [];
    if (ACTIVE_JOB_STATES.has(job.status)) {
      actions.push(h('button', { class: 'button button-small', type: 'button', dataset: { action: 'cancel' }, onclick: () => jobAction(job, 'cancel') }, 'Cancel'));
    }
    if (job.status === 'failed' || job.status === 'cancelled') {
      actions.push(h('button', { class: 'button button-small', type: 'button', dataset: { action: 'retry' }, onclick: () => jobAction(job, 'retry') }, 'Retry'));
    }
    const progress = job.progress || {};
    // A skipped job's reason names the setting that was off; once it is on, that is no longer true.
    const stillOff = job.status === 'skipped' && !taskEnabled(job.task, features);
    return h('li', { class: 'job-card', dataset: { jobId: job.id, task: job.task, jobStatus: job.status } },
      h('div', { class: 'job-card-head' },
        h('strong', {}, TASK_LABELS[job.task] || job.task),
        h('span', { class: 'job-state' }, jobSummary(job, features))),
      bar,
      job.status === 'processing' && progress.total
        ? h('span', { class: 'hint' }, `${progress.stage || 'working'}: ${progress.done} / ${progress.total}`) : null,
      stillOff && job.skip_reason ? h('span', { class: 'hint' }, `Server setting: ${job.skip_reason}`) : null,
      h('span', { class: 'hint' }, [
        `attempts ${job.attempts ?? 0}`,
        job.started_at ? `started ${formatDate(job.started_at)}` : null,
        job.finished_at ? `finished ${formatDate(job.finished_at)}` : null,
      ].filter(Boolean).join(' · ')),
      actions.length ? h('div', { class: 'button-row' }, actions) : null);
  }));
}

async function jobAction(job, action) {
  try {
    await api(`/api/jobs/${encodeURIComponent(job.id)}/${action}`, { method: 'POST' });
  } catch (error) {
    notify(`Could not ${action} the ${TASK_LABELS[job.task] || job.task} job: ${error.message}`);
  }
  await load();
}

async function reprocess(tasks = null) {
  try {
    await api(`${mediaPath}/reprocess`, { method: 'POST', json: tasks ? { tasks } : {} });
    notify(tasks ? `Queued: ${tasks.map((task) => TASK_LABELS[task] || task).join(', ')}.` : 'Reprocessing queued.', 'info');
  } catch (error) {
    notify(`Could not queue the work: ${error.message}`);
  }
  await load();
}

// ---------------------------------------------------------------- actions

function wireActions() {
  document.getElementById('reprocess-button').addEventListener('click', () => reprocess());
  document.getElementById('delete-button').addEventListener('click', async () => {
    const name = state.item?.original_filename || mediaId;
    if (!window.confirm(`Delete "${name}" and everything made from it? This cannot be undone.`)) return;
    try {
      await api(mediaPath, { method: 'DELETE' });
      window.location.href = '/';
    } catch (error) {
      notify(`Could not delete: ${error.message}`);
    }
  });
}

wireApiKeyButton(document.getElementById('api-key-button'));
wireActions();
wireKeys();
checkWork();
showImmichLink();
try {
  state.config = await api('/api/config');
} catch {
  state.config = null; // the page still works; panels then cannot tell "off" from "on since"
}
await Promise.all([load(), loadNeighbours()]);
