// Pure helpers for the depth manifest (no DOM, no three.js), shared by the viewer and its tests.

/**
 * Position in `frames` (sorted by `time`) of the depth frame to show at `time` seconds: the last
 * frame whose time is <= `time`. Before the first frame's time the first frame is used.
 * Returns -1 only for an empty list.
 */
export function depthFramePosition(frames, time) {
  if (!frames.length) return -1;
  let low = 0;
  let high = frames.length - 1;
  if (!(time >= frames[0].time)) return 0; // also catches NaN
  while (low < high) {
    // Upper middle, so `low = middle` always makes progress.
    const middle = (low + high + 1) >> 1;
    if (frames[middle].time <= time) low = middle;
    else high = middle - 1;
  }
  return low;
}

/**
 * 1.0 when darker depth values mean nearer ("near_dark"), 0.0 when brighter means nearer
 * ("near_bright", the Depth Anything convention: it predicts relative inverse depth).
 */
export function nearDarkFactor(polarity) {
  if (polarity === 'near_dark') return 1.0;
  if (polarity === 'near_bright' || polarity === undefined || polarity === null) return 0.0;
  throw new Error(`Unknown depth polarity "${polarity}" in the manifest`);
}

/** Check the parts of the manifest the viewer relies on; throws with a readable reason. */
export function validateManifest(manifest) {
  if (!manifest || typeof manifest !== 'object') throw new Error('The depth manifest is empty.');
  if (manifest.version !== 1) throw new Error(`Unsupported depth manifest version ${manifest.version}.`);
  if (!Array.isArray(manifest.frames) || manifest.frames.length === 0) {
    throw new Error('The depth manifest lists no frames.');
  }
  for (let i = 1; i < manifest.frames.length; i += 1) {
    if (!(manifest.frames[i].time >= manifest.frames[i - 1].time)) {
      throw new Error('The depth manifest frames are not sorted by time.');
    }
  }
  nearDarkFactor(manifest.polarity);
  return manifest;
}
