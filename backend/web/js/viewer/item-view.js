// One library item on the depth surface: its details, its depth manifest, the photo or the playing
// video, and the depth frame that follows the video's time (or the RGB-D video, whose frames carry
// their depth), or a stereo export (?stereo=format). Items without depth (yet) are shown
// flat with their state, and gain depth as soon as it is ready. `show(id)` switches items; it
// can be called again at any time (the VR library does): late results of the old item are dropped.
import * as THREE from 'three';
import { ApiError, api, mediaSource } from '../api.js';
import { depthFramePosition, nearDarkFactor, validateManifest } from '../depth-frames.js';
import {
  BOTTOM_HALF, LEFT_HALF, MAX_PHOTO_SEGMENTS, MAX_VIDEO_SEGMENTS, RIGHT_HALF, TOP_HALF, WHOLE,
} from './depth-surface.js';
import {
  FrameTextureLoader, configureTexture, decodeBitmap, disposeTexture, flatDepthTexture, loadImageTexture, textureSideLimit,
} from './textures.js';

const MANIFEST_RETRY_MS = 4000;
// Stereo formats (docs/stereo.md): which part of the file each eye sees, and the picture's width
// per height of the file (Full SBS holds two full-width views side by side).
const STEREO_LAYOUTS = {
  full_sbs: { left: LEFT_HALF, right: RIGHT_HALF, widthShare: 0.5 },
  half_sbs: { left: LEFT_HALF, right: RIGHT_HALF, widthShare: 1 },
  tb: { left: TOP_HALF, right: BOTTOM_HALF, widthShare: 1 },
  anaglyph: { left: WHOLE, right: null, widthShare: 1 }, // one picture for red-cyan glasses
};

/** Stands in for the <video> when only colour frames can be shown: a clock with the same fields. */
export class FrameClock {
  constructor(duration) {
    this.duration = duration;
    this.currentTime = 0;
    this.paused = false;
    this.muted = true;
  }
  play() { this.paused = false; return Promise.resolve(); }
  pause() { this.paused = true; }
  advance(delta) {
    if (this.paused || !this.duration) return;
    this.currentTime = (this.currentTime + delta) % this.duration;
  }
}

export class ItemNotFound extends Error {}

/** The depth manifest, or why there is none: {manifest} | {missing: {code, message}}. */
async function fetchDepth(id) {
  try {
    return { manifest: validateManifest(await api(`/api/media/${encodeURIComponent(id)}/depth/manifest`)) };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return { missing: { code: error.code, message: error.message } };
    throw error;
  }
}

/** Load the source into the <video>; resolves false when this browser cannot play it. */
function startVideo(video, source, signal) {
  return new Promise((resolve) => {
    const done = (ok) => resolve(ok);
    video.addEventListener('loadeddata', () => done(true), { once: true, signal });
    video.addEventListener('error', () => done(false), { once: true, signal });
    video.src = source;
    video.load();
  });
}

export class ItemView {
  /**
   * renderer: THREE.WebGLRenderer; surface: DepthSurface; video: the page's <video>;
   * state: the object tests read (window.parallaxViewer); onChange(): something to redraw;
   * onStatus(text): the item's depth state in words ('' when depth is shown);
   * onDepthReady(id): the depth of the item shown flat has arrived (show it again).
   */
  constructor({ renderer, surface, video, stereoFormat = null, swapEyes = false, framesOnly = false, state, onChange, onStatus, onDepthReady }) {
    if (stereoFormat && !STEREO_LAYOUTS[stereoFormat]) {
      throw new Error(`Unknown stereo format "${stereoFormat}" (one of ${Object.keys(STEREO_LAYOUTS).join(', ')}).`);
    }
    Object.assign(this, { renderer, surface, video, stereoFormat, swapEyes, framesOnly, state, onChange, onStatus, onDepthReady });
    this.generation = 0;
    this.item = null;
    this.manifest = null;
    this.playback = null; // <video> or FrameClock, for videos
    this.depthFrames = null;
    this.colorFrames = null;
    this.ownTextures = []; // photo colour/depth and the flat depth: disposed on the next switch
    this.listeners = null; // AbortController of this item's <video> listeners
    this.retryTimer = null;
    this.lastVideoTime = -1;
  }

  /** Show another item; resolves true once its textures are on the surface (false when another
   * show() overtook it); throws ItemNotFound or the load error. */
  async show(id) {
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    clearTimeout(this.retryTimer);
    this.state.itemId = id;
    let item;
    try {
      ({ item } = await api(`/api/media/${encodeURIComponent(id)}`));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) throw new ItemNotFound('This item does not exist (it may have been deleted).');
      throw error;
    }
    if (this.stereoFormat) {
      const old = this.release();
      this.item = item;
      await this.showStereo(item, current);
      old();
      if (!current()) return false;
      this.onChange();
      return true;
    }
    const depth = await fetchDepth(id);
    if (!current()) return false;
    this.item = item;
    const old = this.release();
    if (depth.manifest) await this.showWithDepth(item, depth.manifest, current);
    else await this.showFlat(item, depth.missing, current);
    old();
    if (!current()) return false;
    this.onChange();
    return true;
  }

  /** Stop the current item's playback and loaders; returns a function that frees its textures
   * (called once the next item's textures are on the surface, so nothing freed is ever drawn). */
  release() {
    this.listeners?.abort();
    this.listeners = new AbortController();
    this.video.pause();
    const textures = this.ownTextures;
    const loaders = [this.depthFrames, this.colorFrames];
    const videoTexture = this.surface.uniforms.colorMap.value?.isVideoTexture ? this.surface.uniforms.colorMap.value : null;
    this.ownTextures = [];
    this.depthFrames = null;
    this.colorFrames = null;
    this.playback = null;
    this.manifest = null;
    Object.assign(this.state, { mode: null, stereo: null, manifest: null, video: null, currentDepthIndex: 0, loadedDepthFrames: 0, depthState: null });
    return () => {
      loaders.forEach((loader) => loader?.dispose());
      textures.forEach(disposeTexture);
      videoTexture?.dispose();
    };
  }

  async showWithDepth(item, manifest, current) {
    this.manifest = manifest;
    this.state.manifest = manifest;
    this.state.depthState = 'ready';
    this.surface.uniforms.nearDark.value = nearDarkFactor(manifest.polarity);
    this.onStatus('');
    const rgbd = this.framesOnly ? null : manifest.rgbd_video;
    if (manifest.kind === 'video' && rgbd?.url && await this.setUpRgbdVideo(rgbd, current)) return;
    if (!current()) return;
    if (manifest.kind === 'video') await this.setUpVideo(manifest, current);
    else await this.setUpPhoto(manifest, item);
  }

  /** The RGB-D video (colour left, depth right in each frame): one <video>, one texture, so depth
   * follows every frame by construction. Resolves false when this browser cannot play it. */
  async setUpRgbdVideo(rgbd, current) {
    if (rgbd.layout !== 'colour_left_depth_right') return false;
    let playable = false;
    try {
      playable = await startVideo(this.video, await mediaSource(rgbd.url), this.listeners.signal);
    } catch {
      playable = false;
    }
    if (!current() || !playable) return false;
    this.surface.uniforms.nearDark.value = nearDarkFactor(rgbd.polarity);
    this.rgbdPolarity = rgbd.polarity;
    this.state.mode = 'rgbd-video';
    this.playback = this.video;
    this.state.video = this.video;
    this.followVideoFrames(this.listeners.signal);
    const frame = configureTexture(new THREE.VideoTexture(this.video));
    this.surface.setTextures({ color: frame, depth: frame });
    this.surface.setLayout({ color: LEFT_HALF, depth: RIGHT_HALF });
    const width = (rgbd.width || this.video.videoWidth) / 2;
    this.surface.build(width / (rgbd.height || this.video.videoHeight), MAX_VIDEO_SEGMENTS);
    this.video.play().catch(() => this.onChange());
    return true;
  }

  /** Mean nearness (0..1) of the depth half of the RGB-D frame now shown (a debug read-out). */
  sampleRgbdDepth() {
    if (this.state.mode !== 'rgbd-video') return null;
    const { videoWidth, videoHeight } = this.video;
    const canvas = new OffscreenCanvas(64, 32);
    const context = canvas.getContext('2d', { willReadFrequently: true });
    context.drawImage(this.video, videoWidth / 2, 0, videoWidth / 2, videoHeight, 0, 0, 64, 32);
    const pixels = context.getImageData(0, 0, 64, 32).data;
    let sum = 0;
    for (let i = 0; i < pixels.length; i += 4) sum += pixels[i];
    const mean = sum / (pixels.length / 4) / 255;
    return nearDarkFactor(this.rgbdPolarity) ? 1 - mean : mean;
  }

  /** A stereo export (?stereo=format): each eye its half in VR, the left view on a flat screen.
   * Not made yet: the request queues it; shown once the job is done. */
  async showStereo(item, current) {
    const format = this.stereoFormat;
    const layout = STEREO_LAYOUTS[format];
    const url = `/api/media/${encodeURIComponent(item.id)}/stereo?format=${encodeURIComponent(format)}`;
    this.state.stereo = format;
    let color;
    let size;
    if (item.kind === 'video') {
      try {
        await api(`${url.replace('/stereo?', '/stereo/info?')}`);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
        await api(url); // queues it (202)
        return this.waitForStereo(item, current);
      }
      if (!await startVideo(this.video, await mediaSource(url), this.listeners.signal)) {
        throw new Error('This browser cannot play this stereo video.');
      }
      if (!current()) return undefined;
      color = configureTexture(new THREE.VideoTexture(this.video));
      size = [this.video.videoWidth, this.video.videoHeight];
      this.playback = this.video;
      this.state.video = this.video;
      this.followVideoFrames(this.listeners.signal);
      this.video.play().catch(() => this.onChange());
      this.state.mode = 'stereo-video';
    } else {
      const response = await api(url, { raw: true });
      if (response.status === 202) return this.waitForStereo(item, current);
      color = configureTexture(new THREE.Texture(await decodeBitmap(await response.blob(), textureSideLimit(this.renderer))), { renderer: this.renderer });
      this.ownTextures.push(color);
      size = [color.image.width, color.image.height];
      this.state.mode = 'stereo-photo';
    }
    const depth = flatDepthTexture(); // the depth is in the two views
    this.ownTextures.push(depth);
    this.surface.setTextures({ color, depth });
    // Swapped: for files with the right eye's view first (cross-view, "RL" files).
    const [left, right] = this.swapEyes && layout.right ? [layout.right, layout.left] : [layout.left, layout.right];
    this.surface.setLayout({ color: left, right });
    const heightShare = layout.left[3];
    this.surface.build((size[0] * layout.widthShare) / (size[1] * heightShare), 2);
    this.state.depthState = 'none';
    this.onStatus('');
    return undefined;
  }

  waitForStereo(item, current) {
    this.onStatus('Making the stereo version… it is shown when ready.');
    this.retryTimer = setTimeout(() => { if (current()) this.onDepthReady(item.id); }, MANIFEST_RETRY_MS);
  }

  async setUpPhoto(manifest, item) {
    const [frame] = manifest.frames;
    const [color, depth] = await Promise.all([
      loadImageTexture(this.renderer, frame.color_url, { mimeHint: item?.mime_type }),
      loadImageTexture(this.renderer, frame.depth_url, { depth: true }),
    ]);
    this.ownTextures.push(color, depth);
    this.surface.setTextures({ color, depth });
    this.surface.setLayout();
    const aspect = manifest.frame_width && manifest.frame_height
      ? manifest.frame_width / manifest.frame_height
      : color.image.width / color.image.height;
    this.surface.build(aspect, Math.min(MAX_PHOTO_SEGMENTS, Math.max(depth.image.width, depth.image.height)));
    this.state.mode = 'photo';
    this.state.currentDepthIndex = frame.index;
    this.state.loadedDepthFrames = 1;
  }

  async setUpVideo(manifest, current) {
    const signal = this.listeners.signal;
    this.depthFrames = new FrameTextureLoader(this.renderer, manifest.frames.map((f) => f.depth_url), {
      depth: true,
      onLoaded: () => {
        this.state.loadedDepthFrames = this.depthFrames?.loadedCount ?? 0;
        this.onChange();
      },
    });
    const depthFrames = this.depthFrames;
    const firstDepth = depthFrames.load(0);
    depthFrames.pump(); // preload every depth frame in the background
    let playable = false;
    try {
      playable = await startVideo(this.video, await mediaSource(manifest.source_url), signal);
    } catch {
      playable = false;
    }
    if (!current()) return;
    if (playable) {
      this.state.mode = 'video';
      this.playback = this.video;
      this.followVideoFrames(signal);
      this.surface.setTextures({ color: configureTexture(new THREE.VideoTexture(this.video)) });
      this.video.play().catch(() => this.onChange()); // autoplay may be refused; the play control still works
    } else {
      // The browser cannot decode the source (codec): animate the extracted colour frames instead.
      if (manifest.frames.some((f) => !f.color_url)) {
        throw new Error('This browser cannot play this video file, and no colour frames were stored '
          + 'for it (they are kept when the depth job runs with include_color). Try another browser.');
      }
      this.state.mode = 'frames';
      this.video.removeAttribute('src');
      this.colorFrames = new FrameTextureLoader(this.renderer, manifest.frames.map((f) => f.color_url), {
        depth: false, onLoaded: () => this.onChange(),
      });
      this.surface.setTextures({ color: await this.colorFrames.load(0) });
      this.colorFrames.pump();
      const step = manifest.effective_fps ? 1 / manifest.effective_fps : 0;
      this.playback = new FrameClock(manifest.frames[manifest.frames.length - 1].time + step);
      this.onStatus('This browser cannot play the video file; showing its frames.');
    }
    this.state.video = this.playback;
    this.surface.setTextures({ depth: await firstDepth });
    this.state.currentDepthIndex = manifest.frames[0].index;
    const aspect = manifest.frame_width && manifest.frame_height
      ? manifest.frame_width / manifest.frame_height
      : (this.video.videoWidth || 16) / (this.video.videoHeight || 9);
    this.surface.setLayout();
    this.surface.build(aspect, MAX_VIDEO_SEGMENTS);
  }

  /** No depth map (yet): the picture flat, its state in words; poll while the job runs. */
  async showFlat(item, missing, current) {
    const waiting = missing.code === 'not_ready';
    this.state.depthState = waiting ? 'waiting' : 'none';
    this.onStatus(waiting ? `Flat for now: ${missing.message || 'the depth map is not ready yet'}` : `No depth: ${missing.message}`);
    const depth = flatDepthTexture();
    this.ownTextures.push(depth);
    this.surface.setLayout();
    if (item.kind === 'video') {
      const playable = await startVideo(this.video, await mediaSource(item.original_url), this.listeners.signal);
      if (!current()) return;
      if (!playable) throw new Error('This browser cannot play this video file.');
      this.state.mode = 'flat-video';
      this.playback = this.video;
      this.state.video = this.video;
      this.followVideoFrames(this.listeners.signal);
      this.surface.setTextures({ color: configureTexture(new THREE.VideoTexture(this.video)), depth });
      this.surface.build((this.video.videoWidth || 16) / (this.video.videoHeight || 9), 2);
      this.video.play().catch(() => this.onChange());
    } else {
      const color = await loadImageTexture(this.renderer, item.original_url, { mimeHint: item.mime_type });
      this.ownTextures.push(color);
      this.state.mode = 'flat-photo';
      this.surface.setTextures({ color, depth });
      this.surface.build(color.image.width / color.image.height, 2);
    }
    if (waiting) {
      const id = item.id;
      const poll = async () => {
        if (!current()) return;
        const again = await fetchDepth(id).catch(() => ({ missing }));
        if (!current()) return;
        if (again.manifest) this.onDepthReady(id);
        else if (again.missing.code === 'not_ready') this.retryTimer = setTimeout(poll, MANIFEST_RETRY_MS);
        else this.onStatus(`No depth: ${again.missing.message}`);
      };
      this.retryTimer = setTimeout(poll, MANIFEST_RETRY_MS);
    }
  }

  followVideoFrames(signal) {
    this.video.addEventListener('seeked', () => this.onChange(), { signal });
    if ('requestVideoFrameCallback' in this.video) {
      // A new video frame (also after a seek while paused) must reach the screen.
      const video = this.video;
      const onVideoFrame = () => {
        if (signal.aborted) return;
        this.onChange();
        video.requestVideoFrameCallback(onVideoFrame);
      };
      video.requestVideoFrameCallback(onVideoFrame);
    }
  }

  get duration() {
    if (!this.playback) return 0;
    if (this.playback instanceof HTMLVideoElement) return Number.isFinite(this.playback.duration) ? this.playback.duration : 0;
    return this.playback.duration;
  }

  togglePlay() {
    if (!this.playback) return;
    if (this.playback.paused) this.playback.play()?.catch?.(() => {});
    else this.playback.pause();
    this.onChange();
  }

  seek(seconds) {
    if (!this.playback) return;
    this.playback.currentTime = THREE.MathUtils.clamp(seconds, 0, Math.max(0, this.duration - 0.001));
    this.onChange();
  }

  /** Per animation frame: advance the frame clock and show the depth frame for the playback time. */
  update(delta) {
    if (!this.playback || !this.depthFrames || !this.manifest) return;
    const playback = this.playback;
    if (playback instanceof FrameClock) playback.advance(delta);
    const time = playback.currentTime;
    if (time !== this.lastVideoTime || !playback.paused) this.onChange();
    this.lastVideoTime = time;
    const frames = this.manifest.frames;
    const position = depthFramePosition(frames, time);
    // Until the wanted frame has loaded, the nearest loaded one is shown.
    if (!this.depthFrames.textures[position]) this.depthFrames.want(position);
    const shown = this.depthFrames.nearestLoaded(position);
    if (shown >= 0) {
      this.surface.setTextures({ depth: this.depthFrames.textures[shown] });
      this.state.currentDepthIndex = frames[shown].index;
    }
    if (this.colorFrames) {
      if (!this.colorFrames.textures[position]) this.colorFrames.want(position);
      const colorShown = this.colorFrames.nearestLoaded(position);
      if (colorShown >= 0) this.surface.setTextures({ color: this.colorFrames.textures[colorShown] });
    }
  }
}
