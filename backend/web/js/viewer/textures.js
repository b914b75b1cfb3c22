// Textures for the viewer: images are fetched and decoded with createImageBitmap (off the main
// thread, scaled to what the device needs while decoding), then uploaded to the GPU as soon as they
// arrive (renderer.initTexture) so no XR frame pays for a decode or an upload.
import * as THREE from 'three';
import { fetchBlob } from '../api.js';

const DESKTOP_TEXTURE_SIDE = 4096;
// A standalone headset shows a photo ~30° tall at ~20-25 px/degree: 2048 px is sharper than the
// display, and halves memory and upload time on a mobile GPU.
const HEADSET_TEXTURE_SIDE = 2048;
const PRELOAD_CONCURRENCY = 4;

/** True in a standalone headset's browser (Quest, Pico, Wolvic): smaller textures and meshes. */
export const standaloneHeadset = /OculusBrowser|Quest|Pico|Wolvic|VR\b/.test(navigator.userAgent);

export function textureSideLimit(renderer) {
  return Math.min(standaloneHeadset ? HEADSET_TEXTURE_SIDE : DESKTOP_TEXTURE_SIDE, renderer.capabilities.maxTextureSize);
}

/** Decode a blob into an ImageBitmap no larger than `maxSide`, EXIF orientation applied. */
export async function decodeBitmap(blob, maxSide, mimeHint = '') {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' });
  } catch {
    throw new Error(`This browser cannot decode the image (${blob.type || mimeHint || 'this format'}).`);
  }
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  if (scale >= 1) return bitmap;
  const resized = await createImageBitmap(bitmap, {
    resizeWidth: Math.max(1, Math.floor(bitmap.width * scale)),
    resizeHeight: Math.max(1, Math.floor(bitmap.height * scale)),
    resizeQuality: 'high',
  });
  bitmap.close();
  return resized;
}

/** A texture for a bitmap or video: uploaded top row first (flipY = false), colours untouched. */
export function configureTexture(texture, { depth = false, renderer = null } = {}) {
  texture.flipY = false;
  texture.colorSpace = THREE.NoColorSpace; // pass colours through untouched (see the fragment shader)
  if (depth || texture.isVideoTexture) {
    // Depth is sampled in the vertex shader: no mipmaps, smooth interpolation between pixels.
    texture.generateMipmaps = false;
    texture.minFilter = THREE.LinearFilter;
  } else {
    texture.minFilter = THREE.LinearMipmapLinearFilter;
    if (renderer) texture.anisotropy = renderer.capabilities.getMaxAnisotropy();
  }
  texture.magFilter = THREE.LinearFilter;
  texture.wrapS = THREE.ClampToEdgeWrapping;
  texture.wrapT = THREE.ClampToEdgeWrapping;
  texture.needsUpdate = true;
  return texture;
}

/** Fetch (with the API key or paired session) and decode an image into an uploaded texture. */
export async function loadImageTexture(renderer, url, { depth = false, mimeHint = '' } = {}) {
  const bitmap = await decodeBitmap(await fetchBlob(url), textureSideLimit(renderer), mimeHint);
  const texture = configureTexture(new THREE.Texture(bitmap), { depth, renderer });
  renderer.initTexture(texture);
  return texture;
}

export function disposeTexture(texture) {
  if (!texture) return;
  texture.dispose();
  texture.image?.close?.(); // ImageBitmap memory is freed only by close()
}

/** A 1×1 mid-grey depth map: shows any picture flat (used while an item has no depth yet). */
export function flatDepthTexture() {
  const texture = new THREE.DataTexture(new Uint8Array([128, 128, 128, 255]), 1, 1);
  return configureTexture(texture, { depth: true });
}

/** Loads a list of frame textures with limited concurrency; `want(i)` moves a frame to the front. */
export class FrameTextureLoader {
  constructor(renderer, urls, { depth, onLoaded }) {
    this.renderer = renderer;
    this.urls = urls;
    this.depth = depth;
    this.onLoaded = onLoaded;
    this.textures = new Array(urls.length).fill(null);
    this.pending = new Map(); // position -> promise
    this.queue = urls.map((_, i) => i);
    this.active = 0;
    this.failures = 0;
    this.disposed = false;
  }

  get loadedCount() {
    return this.textures.filter(Boolean).length;
  }

  want(position) {
    if (this.textures[position] || this.pending.has(position)) return;
    this.queue = [position, ...this.queue.filter((p) => p !== position)];
    this.pump();
  }

  load(position) {
    if (this.textures[position]) return Promise.resolve(this.textures[position]);
    if (this.pending.has(position)) return this.pending.get(position);
    this.queue = this.queue.filter((p) => p !== position);
    this.active += 1;
    const promise = loadImageTexture(this.renderer, this.urls[position], { depth: this.depth })
      .then((texture) => {
        if (this.disposed) {
          disposeTexture(texture);
          throw new Error('superseded');
        }
        this.textures[position] = texture;
        this.onLoaded?.(position);
        return texture;
      })
      .catch((error) => {
        this.failures += 1;
        throw error;
      })
      .finally(() => {
        this.pending.delete(position);
        this.active -= 1;
        this.pump();
      });
    this.pending.set(position, promise);
    return promise;
  }

  pump() {
    while (!this.disposed && this.active < PRELOAD_CONCURRENCY && this.queue.length) {
      this.load(this.queue.shift()).catch(() => {}); // failures are counted; the frame stays unloaded
    }
  }

  /** The loaded texture nearest to `position` (itself when loaded), or -1. */
  nearestLoaded(position) {
    if (this.textures[position]) return position;
    for (let distance = 1; distance < this.textures.length; distance += 1) {
      if (this.textures[position - distance]) return position - distance;
      if (this.textures[position + distance]) return position + distance;
    }
    return -1;
  }

  dispose() {
    this.disposed = true;
    this.queue = [];
    this.textures.forEach(disposeTexture);
    this.textures.fill(null);
  }
}
