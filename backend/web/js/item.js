// Item page: the original, its depth map and cut-out, downloads, and the item's jobs with
// live progress and cancel / retry.
import { ApiError, api, mediaSource } from './api.js';
import {
  ACTIVE_JOB_STATES, TASK_LABELS, formatBytes, formatDate, formatDuration, h, idFromPath, jobFraction,
  jobSummary, notify, progressBar, setProgress, wireApiKeyButton,
} from './ui.js';

const POLL_INTERVAL_MS = 2000;
const mediaId = idFromPath();
const mediaPath = `/api/media/${encodeURIComponent(mediaId)}`;

const state = {
  config: null,
  item: null,
  jobs: [],
  assets: [],
  assetsKey: '', // which assets the media panels currently show; re-render only on change
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
  const assetsKey = state.assets.map((asset) => `${asset.id}:${asset.kind}:${asset.size_bytes}`).join('|');
  if (assetsKey !== state.assetsKey) {
    state.assetsKey = assetsKey;
    await Promise.all([renderDepth(), renderCutout()]);
    renderDownloads();
  }
  schedulePoll(state.jobs.some((job) => ACTIVE_JOB_STATES.has(job.status)));
}

function schedulePoll(active) {
  clearTimeout(state.pollTimer);
  if (active) state.pollTimer = setTimeout(load, POLL_INTERVAL_MS);
}

// ---------------------------------------------------------------- header & details

function assetOf(...kinds) {
  return state.assets.find((asset) => kinds.includes(asset.kind));
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
  viewerLink.hidden = !assetOf('depth', 'depth_frames');
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

// ---------------------------------------------------------------- media panels

/** <img>/<video> for a URL, loaded through mediaSource (API key aware). */
async function mediaElement(url, { video = false, alt = '', controls = true } = {}) {
  const source = await mediaSource(url);
  if (video) return h('video', { src: source, controls, playsinline: true, preload: 'metadata', muted: true, loop: true });
  return h('img', { src: source, alt });
}

async function fillFrame(frameId, build) {
  const frame = document.getElementById(frameId);
  try {
    const element = await build();
    frame.replaceChildren(element);
    element.addEventListener('error', () => frame.replaceChildren('This browser cannot display this file; use the download link.'));
  } catch (error) {
    frame.replaceChildren(error.message);
  }
}

async function renderOriginal() {
  const { item } = state;
  state.originalShown = true;
  const frame = document.getElementById('original-frame');
  try {
    const element = await mediaElement(item.original_url || `${mediaPath}/original`,
      { video: item.kind === 'video', alt: item.original_filename || 'Original' });
    element.addEventListener('error', async () => {
      // Browsers cannot show HEIC/TIFF originals; the server's upright JPEG copy can stand in.
      if (item.kind === 'photo' && !element.dataset.fallback) {
        element.dataset.fallback = '1';
        element.src = await mediaSource(`${mediaPath}/depth/frames/1/color`);
      } else {
        frame.replaceChildren('This browser cannot display this file; use the download link.');
      }
    });
    frame.replaceChildren(element);
  } catch (error) {
    frame.replaceChildren(error.message);
  }
}

async function renderDepth() {
  const frame = document.getElementById('depth-frame');
  const extra = document.getElementById('depth-extra');
  const asset = assetOf('depth', 'depth_frames');
  if (!asset) {
    const job = state.jobs.find((j) => j.task === 'depth' || j.task === 'video_depth');
    frame.replaceChildren(job ? `Depth: ${jobSummary(job)}` : 'No depth map for this item.');
    extra.textContent = '';
    return;
  }
  const polarity = asset.metadata?.polarity;
  extra.textContent = [asset.model, polarity ? `polarity ${polarity.replace('_', ' ')}` : null,
    asset.width && asset.height ? `${asset.width}×${asset.height}` : null].filter(Boolean).join(' · ');
  if (asset.kind === 'depth') {
    await fillFrame('depth-frame', () => mediaElement(asset.url || `${mediaPath}/depth`, { alt: 'Depth map' }));
    return;
  }
  // Video: preview one depth frame at a time with a slider over the manifest's frames.
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
  extra.replaceChildren(extra.textContent, h('br'), slider, label,
    h('br'), `${manifest.frames.length} frames at ${Number(manifest.effective_fps || 0).toFixed(2)} fps`);
  await show();
}

async function renderCutout() {
  const frame = document.getElementById('cutout-frame');
  const extra = document.getElementById('cutout-extra');
  const asset = assetOf('cutout');
  const job = state.jobs.find((j) => j.task === 'cutout' || j.task === 'video_cutout');
  extra.replaceChildren();
  frame.classList.toggle('checkerboard', Boolean(asset)); // transparency shows only on an actual cut-out
  if (asset) {
    const isVideo = (asset.mime_type || '').startsWith('video/');
    await fillFrame('cutout-frame', () => mediaElement(asset.url || `${mediaPath}/cutout`, { video: isVideo, alt: 'Cut-out' }));
    extra.textContent = [asset.model, asset.variant].filter(Boolean).join(' · ');
    return;
  }
  if (job) {
    frame.replaceChildren(`Cut-out: ${jobSummary(job)}`);
    return;
  }
  const enabled = state.config?.features?.background_removal;
  if (!enabled) {
    frame.replaceChildren('Background removal is turned off on this server.');
    return;
  }
  frame.replaceChildren(h('button', { class: 'button', type: 'button', onclick: requestCutout }, 'Create cut-out'));
}

async function requestCutout() {
  const frame = document.getElementById('cutout-frame');
  frame.replaceChildren('Requesting…');
  try {
    const response = await api(`${mediaPath}/cutout?background=transparent`, { raw: true });
    if (response.status === 202) frame.replaceChildren('Queued…');
    await load();
  } catch (error) {
    frame.replaceChildren(error.status === 404 ? 'Background removal is not available for this item.' : error.message);
  }
}

// ---------------------------------------------------------------- downloads

function downloadName(suffix, extension) {
  const base = (state.item.original_filename || state.item.id).replace(/\.[^.]+$/, '');
  return `${base}${suffix}.${extension}`;
}

function extensionFor(mime) {
  return { 'image/png': 'png', 'application/zip': 'zip', 'image/jpeg': 'jpg', 'video/mp4': 'mp4', 'video/webm': 'webm' }[mime] || 'bin';
}

function renderDownloads() {
  const { item } = state;
  const links = [
    { label: 'Original', url: item.original_url || `${mediaPath}/original`, name: item.original_filename || '', size: item.size_bytes },
    ...state.assets.map((asset) => ({
      label: {
        depth: 'Depth map (PNG)', depth_frames: 'Depth frames (ZIP)', cutout: 'Cut-out',
      }[asset.kind] || asset.kind,
      url: asset.url,
      name: downloadName(`-${asset.kind}${asset.variant ? `-${asset.variant}` : ''}`, extensionFor(asset.mime_type)),
      size: asset.size_bytes,
    })),
  ];
  document.getElementById('downloads').replaceChildren(...links.filter((link) => link.url).map((link) => {
    const anchor = h('a', { href: link.url, download: link.name }, link.label);
    return h('li', {}, anchor, h('span', { class: 'muted' }, formatBytes(link.size)));
  }));
}

// ---------------------------------------------------------------- jobs

function renderJobs() {
  const list = document.getElementById('job-list');
  if (!state.jobs.length) {
    list.replaceChildren(h('li', { class: 'muted' }, 'No jobs for this item.'));
    return;
  }
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
    return h('li', { class: 'job-card', dataset: { jobId: job.id, task: job.task, jobStatus: job.status } },
      h('div', { class: 'job-card-head' },
        h('strong', {}, TASK_LABELS[job.task] || job.task),
        h('span', { class: 'job-state' }, job.status)),
      bar,
      job.status === 'processing' && progress.total
        ? h('span', { class: 'hint' }, `${progress.stage || 'working'}: ${progress.done} / ${progress.total}`) : null,
      job.error ? h('span', { class: 'hint' }, `Error: ${job.error}`) : null,
      job.skip_reason ? h('span', { class: 'hint' }, `Skipped: ${job.skip_reason}`) : null,
      job.enable_with ? h('span', { class: 'hint' }, 'Enable with ', h('code', {}, job.enable_with)) : null,
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

// ---------------------------------------------------------------- actions

function wireActions() {
  document.getElementById('reprocess-button').addEventListener('click', async () => {
    try {
      await api(`${mediaPath}/reprocess`, { method: 'POST' });
      notify('Reprocessing queued.', 'info');
      state.assetsKey = '';
    } catch (error) {
      notify(`Could not reprocess: ${error.message}`);
    }
    await load();
  });
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
try {
  state.config = await api('/api/config');
} catch {
  state.config = null; // the page still works; only the "Create cut-out" button needs it
}
await load();
