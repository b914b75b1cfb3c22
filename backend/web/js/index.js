// Library page: upload (drag and drop or file picker), the media grid with live job progress,
// the feature flags and the Immich import panel.
import { api, mediaSource, uploadMedia } from './api.js';
import {
  ACTIVE_JOB_STATES, FEATURE_LABELS, TASK_LABELS, checkWork, formatBytes, formatDate, formatDuration, h, jobFraction,
  jobSummary, notify, progressBar, setProgress, showImmichLink, wireApiKeyButton,
} from './ui.js';

const POLL_INTERVAL_MS = 2000;
const PER_PAGE = 48;
const PARALLEL_UPLOADS = 2;

const state = {
  config: null,
  page: 1,
  kind: '',
  total: 0,
  items: [],
  jobsByMedia: new Map(),
  cards: new Map(), // media id -> card element, so polling updates in place (no thumbnail reloads)
  uploadsInFlight: 0,
  immichRunning: false,
  writeBackOn: false,
  writeBackBusy: false, // write-back jobs waiting or running: the Immich panel's counts move
  pollTimer: null,
};

// ---------------------------------------------------------------- config & features

async function loadConfig() {
  try {
    state.config = await api('/api/config');
  } catch (error) {
    notify(`Could not load the server configuration: ${error.message}`);
    return;
  }
  const { features = {}, limits = {}, models = {} } = state.config;
  const list = document.getElementById('features');
  list.replaceChildren(...Object.entries(features).filter(([name]) => FEATURE_LABELS[name]).map(([name, enabled]) =>
    h('li', { class: `feature ${enabled ? 'on' : 'off'}`, dataset: { feature: name } },
      h('span', { class: 'feature-dot', 'aria-hidden': 'true' }),
      h('span', {}, FEATURE_LABELS[name]),
      h('span', { class: 'feature-state' }, enabled ? 'on' : 'off'))));
  const modelList = document.getElementById('models');
  modelList.replaceChildren(...modelDescriptions(models).flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
  if (limits.max_upload_bytes) {
    document.getElementById('upload-limit').textContent = ` · up to ${formatBytes(limits.max_upload_bytes)} each`;
  }
}

/** A model's name as people know it: the last part of a hub id or folder, never a full path. */
function modelName(value) {
  const parts = String(value || '').split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] || '';
}

function modelDescriptions(models) {
  return [
    ['Depth model', modelName(models.depth)],
    ['Depth maps', [models.depth_bit_depth ? `${models.depth_bit_depth}-bit` : null,
      { near_dark: 'near is dark', near_bright: 'near is bright' }[models.depth_polarity]].filter(Boolean).join(', ')],
    ['Cut-out model', modelName(models.segmentation)],
  ].filter(([, value]) => value);
}

/** Work skipped while a feature was off that can run now: how much, and one button to queue it. */
async function refreshWaiting() {
  const box = document.getElementById('waiting');
  let waiting;
  try {
    waiting = await api('/api/jobs/requeue-skipped');
  } catch {
    box.hidden = true;
    return;
  }
  box.hidden = !waiting.count;
  if (!waiting.count) return;
  const parts = Object.entries(waiting.by_task).map(([task, n]) => `${(TASK_LABELS[task] || task).toLowerCase()}: ${n}`);
  document.getElementById('waiting-text').textContent = `${waiting.count} job${waiting.count === 1 ? '' : 's'} skipped`
    + ` while ${waiting.count === 1 ? 'its feature was' : 'their features were'} off can run now (${parts.join(', ')}).`;
  const button = document.getElementById('waiting-button');
  button.textContent = `Process ${waiting.count} now`;
  button.disabled = false;
}

function wireWaiting() {
  const button = document.getElementById('waiting-button');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const result = await api('/api/jobs/requeue-skipped', { method: 'POST', json: {} });
      notify(`Queued ${result.count} job${result.count === 1 ? '' : 's'}.`, 'info');
    } catch (error) {
      notify(`Could not queue the waiting jobs: ${error.message}`);
    }
    await Promise.all([refreshWaiting(), refreshLibrary()]);
  });
}

// ---------------------------------------------------------------- uploads

const uploadQueue = [];

function queueFiles(files) {
  const maxBytes = state.config?.limits?.max_upload_bytes;
  for (const file of files) {
    const bar = progressBar();
    const statusText = h('span', { class: 'upload-status' }, 'waiting');
    const row = h('li', { class: 'upload', dataset: { state: 'waiting' } },
      h('span', { class: 'upload-name', title: file.name }, file.name),
      h('span', { class: 'upload-size muted' }, formatBytes(file.size)),
      bar, statusText);
    setProgress(bar, 0);
    document.getElementById('upload-list').prepend(row);
    if (maxBytes && file.size > maxBytes) {
      finishUploadRow(row, statusText, 'failed', `too large (limit ${formatBytes(maxBytes)})`);
      continue;
    }
    uploadQueue.push({ file, row, bar, statusText });
  }
  pumpUploads();
}

function finishUploadRow(row, statusText, rowState, message) {
  row.dataset.state = rowState;
  statusText.textContent = message;
}

function pumpUploads() {
  while (state.uploadsInFlight < PARALLEL_UPLOADS && uploadQueue.length) {
    const upload = uploadQueue.shift();
    state.uploadsInFlight += 1;
    runUpload(upload).finally(() => {
      state.uploadsInFlight -= 1;
      pumpUploads();
    });
  }
}

async function runUpload({ file, row, bar, statusText }) {
  row.dataset.state = 'uploading';
  statusText.textContent = 'uploading';
  try {
    const result = await uploadMedia(file, {
      onProgress: (fraction) => {
        setProgress(bar, fraction);
        statusText.textContent = fraction < 1 ? `${Math.round(fraction * 100)}%` : 'checking…';
      },
    });
    setProgress(bar, 1);
    const item = result?.item;
    row.dataset.itemId = item?.id ?? '';
    // "pending" after an upload means the job queue could not be reached: the work waits for it.
    const waiting = (result?.jobs || []).some((job) => job.status === 'pending');
    finishUploadRow(row, statusText, 'done',
      result?.duplicate ? 'already in library' : waiting ? 'uploaded; its processing waits for the job queue' : 'uploaded');
    if (item) {
      row.querySelector('.upload-name').replaceChildren(h('a', { href: `/items/${item.id}` }, file.name));
    }
    await refreshLibrary();
  } catch (error) {
    finishUploadRow(row, statusText, 'failed', error.message);
  }
}

function wireUploads() {
  const input = document.getElementById('file-input');
  const dropzone = document.getElementById('dropzone');
  input.addEventListener('change', () => {
    queueFiles([...input.files]);
    input.value = ''; // choosing the same file again must fire "change" again
  });
  // Accept drops anywhere on the page, highlight the drop zone while dragging.
  let dragDepth = 0;
  document.addEventListener('dragenter', (event) => {
    if (!event.dataTransfer?.types?.includes('Files')) return;
    dragDepth += 1;
    dropzone.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropzone.classList.remove('dragging');
  });
  document.addEventListener('dragover', (event) => {
    if (event.dataTransfer?.types?.includes('Files')) event.preventDefault();
  });
  document.addEventListener('drop', (event) => {
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove('dragging');
    queueFiles([...event.dataTransfer.files]);
  });
}

// ---------------------------------------------------------------- library grid

/** The newest job per task for each media item. */
function groupJobs(jobs) {
  const byMedia = new Map();
  for (const job of jobs) {
    const tasks = byMedia.get(job.media_id) || new Map();
    const previous = tasks.get(job.task);
    if (!previous || String(job.created_at) >= String(previous.created_at)) tasks.set(job.task, job);
    byMedia.set(job.media_id, tasks);
  }
  return byMedia;
}

async function refreshLibrary() {
  const query = new URLSearchParams({ page: String(state.page), per_page: String(PER_PAGE) });
  if (state.kind) query.set('kind', state.kind);
  try {
    const [media, jobs] = await Promise.all([
      api(`/api/media?${query}`),
      api('/api/jobs?per_page=500'),
    ]);
    state.items = media.items || [];
    state.total = media.total ?? state.items.length;
    state.jobsByMedia = groupJobs(jobs.jobs || []);
    // Items on this page that the recent-jobs list does not cover: ask for their own jobs.
    const missing = state.items.filter((item) => !state.jobsByMedia.has(item.id) && item.status !== 'ready');
    await Promise.all(missing.slice(0, 12).map(async (item) => {
      const own = await api(`/api/jobs?media_id=${encodeURIComponent(item.id)}`);
      const grouped = groupJobs(own.jobs || []);
      if (grouped.has(item.id)) state.jobsByMedia.set(item.id, grouped.get(item.id));
    }));
    renderGrid();
  } catch (error) {
    notify(`Could not load the library: ${error.message}`);
  }
  schedulePoll();
}

function itemJobs(item) {
  const tasks = state.jobsByMedia.get(item.id);
  return tasks ? [...tasks.values()] : [];
}

function isBusy(item) {
  return itemJobs(item).some((job) => ACTIVE_JOB_STATES.has(job.status))
    || ['pending', 'queued', 'processing'].includes(item.status);
}

function hasDepth(item) {
  return itemJobs(item).some((job) => (job.task === 'depth' || job.task === 'video_depth') && job.status === 'completed');
}

function thumbnail(item) {
  const holder = h('div', { class: 'thumb' });
  const url = item.thumbnail_url || `/api/media/${encodeURIComponent(item.id)}/thumbnail`;
  // A small WebP the server made (videos: a frame near the start), loaded when scrolled into view.
  mediaSource(url).then((source) => {
    const image = h('img', { src: source, alt: item.original_filename || '', loading: 'lazy', decoding: 'async' });
    image.addEventListener('error', () => holder.classList.add('thumb-broken'));
    holder.append(image);
  }).catch(() => holder.classList.add('thumb-broken'));
  return holder;
}

function jobRow(job) {
  const bar = progressBar();
  const row = h('li', { class: 'job', dataset: { task: job.task, jobId: job.id } },
    h('span', { class: 'job-task' }, TASK_LABELS[job.task] || job.task),
    h('span', { class: 'job-state' }),
    bar);
  updateJobRow(row, job);
  return row;
}

function updateJobRow(row, job) {
  row.dataset.jobStatus = job.status;
  row.dataset.jobId = job.id;
  const text = jobSummary(job, state.config?.features);
  const stateEl = row.querySelector('.job-state');
  stateEl.textContent = text;
  stateEl.title = text;
  const bar = row.querySelector('.progress');
  bar.hidden = !ACTIVE_JOB_STATES.has(job.status);
  setProgress(bar, job.status === 'processing' ? jobFraction(job) : job.status === 'completed' ? 1 : 0);
}

function createCard(item) {
  const detailsUrl = `/items/${encodeURIComponent(item.id)}`;
  const meta = [
    item.width && item.height ? `${item.width}×${item.height}` : null,
    item.kind === 'video' && item.duration ? formatDuration(item.duration) : null,
    formatBytes(item.size_bytes),
  ].filter(Boolean).join(' · ');
  const card = h('article', { class: 'card', dataset: { itemId: item.id, kind: item.kind } },
    // Nothing is drawn over the picture: kind and source are tags under it.
    h('a', { class: 'card-media', href: detailsUrl, 'aria-label': `Open ${item.original_filename || item.id}` },
      thumbnail(item)),
    h('div', { class: 'card-body' },
      h('a', { class: 'card-title', href: detailsUrl, title: item.original_filename || '' }, item.original_filename || item.id),
      h('div', { class: 'card-tags' },
        h('span', { class: `tag tag-${item.kind}` }, item.kind === 'video' ? 'Video' : 'Photo'),
        item.source === 'immich' ? h('span', { class: 'tag tag-source' }, 'Immich') : null),
      h('div', { class: 'card-meta muted', title: formatDate(item.captured_at || item.created_at) }, meta),
      h('ul', { class: 'jobs' }),
      h('div', { class: 'card-actions' },
        h('a', { class: 'button button-small viewer-link', href: `/viewer/${encodeURIComponent(item.id)}` }, 'View in 3D'))));
  return card;
}

function updateCard(card, item) {
  card.dataset.status = item.status || '';
  const jobs = itemJobs(item).sort((a, b) => a.task.localeCompare(b.task));
  const list = card.querySelector('.jobs');
  const rows = new Map([...list.children].map((row) => [row.dataset.task, row]));
  for (const job of jobs) {
    const row = rows.get(job.task);
    if (row) updateJobRow(row, job);
    else list.append(jobRow(job));
    rows.delete(job.task);
  }
  for (const stale of rows.values()) stale.remove();
  if (!jobs.length) list.replaceChildren(h('li', { class: 'job muted' }, item.status || ''));
  card.querySelector('.viewer-link').hidden = !hasDepth(item);
}

function renderGrid() {
  const grid = document.getElementById('grid');
  const seen = new Set();
  const ordered = state.items.map((item) => {
    seen.add(item.id);
    let card = state.cards.get(item.id);
    if (!card) {
      card = createCard(item);
      state.cards.set(item.id, card);
    }
    updateCard(card, item);
    return card;
  });
  for (const [id, card] of state.cards) {
    if (!seen.has(id)) {
      card.remove();
      state.cards.delete(id);
    }
  }
  // Re-append in server order; moving existing nodes keeps their loaded thumbnails.
  ordered.forEach((card, index) => {
    if (grid.children[index] !== card) grid.insertBefore(card, grid.children[index] || null);
  });
  document.getElementById('grid-empty').hidden = state.items.length > 0;
  document.getElementById('library-count').textContent = state.total ? `(${state.total})` : '';
  const pages = Math.max(1, Math.ceil(state.total / PER_PAGE));
  document.getElementById('pager').hidden = pages <= 1;
  document.getElementById('page-label').textContent = `Page ${state.page} of ${pages}`;
  document.getElementById('page-prev').disabled = state.page <= 1;
  document.getElementById('page-next').disabled = state.page >= pages;
}

function wireLibraryControls() {
  for (const button of document.querySelectorAll('.filters [data-kind]')) {
    button.addEventListener('click', () => {
      document.querySelectorAll('.filters [data-kind]').forEach((b) => b.classList.toggle('active', b === button));
      state.kind = button.dataset.kind;
      state.page = 1;
      refreshLibrary();
    });
  }
  document.getElementById('page-prev').addEventListener('click', () => {
    state.page = Math.max(1, state.page - 1);
    refreshLibrary();
  });
  document.getElementById('page-next').addEventListener('click', () => {
    state.page += 1;
    refreshLibrary();
  });
}

// ---------------------------------------------------------------- polling

/** Poll every 2 s only while something is moving: jobs, uploads, an Immich import or write-back. */
function schedulePoll() {
  clearTimeout(state.pollTimer);
  const busy = state.items.some(isBusy) || state.uploadsInFlight > 0 || state.immichRunning || state.writeBackBusy;
  if (!busy) return;
  state.pollTimer = setTimeout(async () => {
    // Write-back jobs start when an item's 3D version is made: its counts move while items are busy.
    if (state.immichRunning || state.writeBackBusy || (state.writeBackOn && state.items.some(isBusy))) await refreshImmich();
    await refreshLibrary();
  }, POLL_INTERVAL_MS);
}

// ---------------------------------------------------------------- Immich

function describeRun(run) {
  return Object.entries(run)
    .filter(([key, value]) => value !== null && typeof value !== 'object' && key !== 'ok')
    .map(([key, value]) => `${key.replace(/_/g, ' ')}: ${/_at$/.test(key) ? formatDate(value) : value}`)
    .join(' · ');
}

/** Progress of a running import, whatever the server names its counters. */
function runFraction(run) {
  const total = run.total ?? run.progress?.total;
  const done = run.done ?? run.processed ?? run.imported ?? run.progress?.done;
  return total ? Math.min(1, (done || 0) / total) : null;
}

const STEREO_LAYOUT_LABELS = { full_sbs: 'Full SBS', half_sbs: 'Half SBS', tb: 'Top-Bottom', anaglyph: 'anaglyph' };

/** "Write-back to Immich: on — 12 uploaded to album 'Parallax 3D' (Full SBS), 2 waiting, 1 failed: <reason>". */
function describeWriteBack(writeBack) {
  if (!writeBack.enabled) {
    return [`Write-back to Immich: off (${writeBack.enable_with} to turn it on)`];
  }
  const album = writeBack.album_url
    ? h('a', { href: writeBack.album_url, target: '_blank', rel: 'noopener' }, `'${writeBack.album}'`)
    : `'${writeBack.album}'`;
  const layout = STEREO_LAYOUT_LABELS[writeBack.layout] || writeBack.layout;
  const parts = [`Write-back to Immich: on — ${writeBack.uploaded} uploaded to album `, album, ` (${layout})`];
  for (const [count, what] of [
    [writeBack.in_progress, 'being uploaded'],
    [writeBack.jobs_waiting, 'waiting'],
    [writeBack.replaced, 'old versions to remove'],
  ]) {
    if (count) parts.push(`, ${count} ${what}`);
  }
  const failure = writeBack.last_failure;
  if (writeBack.jobs_failed) {
    parts.push(', ', h('span', { class: 'writeback-failed' }, `${writeBack.jobs_failed} failed`));
    if (failure) {
      parts.push(`: ${failure.reason}`);
      if (failure.media_id) {
        parts.push(' (', h('a', { href: `/items/${encodeURIComponent(failure.media_id)}` }, 'item'), ')');
      }
    }
  }
  return parts;
}

async function refreshImmich() {
  const statusEl = document.getElementById('immich-status');
  const progressEl = document.getElementById('immich-progress');
  const buttons = ['immich-test', 'immich-import-incremental', 'immich-import-full'].map((id) => document.getElementById(id));
  let status;
  try {
    status = await api('/api/immich/status');
  } catch (error) {
    statusEl.textContent = `Status unavailable: ${error.message}`;
    return;
  }
  const panel = document.getElementById('immich-panel');
  panel.dataset.configured = String(Boolean(status.configured));
  const writeBackEl = document.getElementById('immich-writeback');
  if (!status.configured) {
    statusEl.textContent = 'Not configured. Set IMMICH_URL and IMMICH_API_KEY on the server to import your library.';
    buttons.forEach((button) => { button.disabled = true; });
    progressEl.hidden = true;
    writeBackEl.hidden = true;
    state.immichRunning = false;
    state.writeBackOn = false;
    state.writeBackBusy = false;
    return;
  }
  writeBackEl.dataset.enabled = String(status.write_back.enabled);
  writeBackEl.replaceChildren(...describeWriteBack(status.write_back));
  writeBackEl.hidden = false;
  state.writeBackOn = status.write_back.enabled;
  state.writeBackBusy = Boolean(status.write_back.enabled && status.write_back.jobs_waiting);
  showImmichLink(status);
  const url = status.public_url || status.url;
  const running = status.running;
  state.immichRunning = Boolean(running);
  buttons.forEach((button) => { button.disabled = false; });
  buttons.slice(1).forEach((button) => { button.disabled = state.immichRunning; });
  statusEl.replaceChildren(
    url ? h('span', {}, 'Connected to ', h('a', { href: url, target: '_blank', rel: 'noopener' }, url)) : h('span', {}, 'Configured'),
    status.last_run ? h('span', { class: 'small muted block' }, `Last import — ${describeRun(status.last_run)}`) : '');
  if (running) {
    const bar = progressBar();
    setProgress(bar, runFraction(running));
    progressEl.replaceChildren(h('div', { class: 'small' }, `Importing — ${describeRun(running)}`), bar);
    progressEl.hidden = false;
  } else {
    progressEl.hidden = true;
  }
  schedulePoll();
}

function wireImmich() {
  const result = document.getElementById('immich-result');
  document.getElementById('immich-test').addEventListener('click', async () => {
    result.textContent = 'Testing…';
    try {
      const response = await api('/api/immich/test', { method: 'POST' });
      const details = response && typeof response === 'object' ? describeRun(response) : '';
      result.textContent = `Connection OK${details ? ` — ${details}` : ''}`;
    } catch (error) {
      result.textContent = `Connection failed: ${error.message}`;
    }
  });
  for (const mode of ['incremental', 'full']) {
    document.getElementById(`immich-import-${mode}`).addEventListener('click', async () => {
      result.textContent = `Starting ${mode} import…`;
      try {
        await api('/api/immich/import', { method: 'POST', json: { mode } });
        result.textContent = `${mode === 'full' ? 'Full' : 'Incremental'} import started.`;
        state.immichRunning = true;
        await refreshImmich();
        await refreshLibrary();
      } catch (error) {
        result.textContent = `Import failed to start: ${error.message}`;
      }
    });
  }
}

// ---------------------------------------------------------------- start

wireApiKeyButton(document.getElementById('api-key-button'));
wireUploads();
wireLibraryControls();
wireImmich();
wireWaiting();
checkWork();
await loadConfig();
await Promise.all([refreshLibrary(), refreshImmich(), refreshWaiting()]);
