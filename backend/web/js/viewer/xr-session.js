// Entering VR: whether this browser can (and if not, why and what to do), the "Enter VR" button,
// session start errors shown to the user, and the WebXR emulator for tests and debugging.
import { api } from '../api.js';

export const SESSION_INIT = {
  // local-floor: y = 0 is the floor, so the picture can hang at eye height. Hands: pinch = select.
  optionalFeatures: ['local-floor', 'bounded-floor', 'hand-tracking'],
};

/**
 * Install Meta's WebXR emulation runtime (iwer) when the address asks for it (?xr-emulate=1) and
 * the server allows it (ALLOW_XR_EMULATION). Returns the emulated device, or null.
 */
export async function maybeEmulateXR() {
  if (new URLSearchParams(window.location.search).get('xr-emulate') !== '1') return null;
  const config = await api('/api/config');
  if (!config.viewer?.xr_emulation) {
    console.warn('?xr-emulate=1 ignored: the server does not allow WebXR emulation (ALLOW_XR_EMULATION)');
    return null;
  }
  const { XRDevice, metaQuest3 } = await import('/static/vendor/iwer.module.min.js');
  const device = new XRDevice(metaQuest3, { stereoEnabled: true });
  device.installRuntime({ forceInstall: true }); // replace the browser's own (absent) runtime
  window.parallaxXRDevice = device; // tests drive the emulated headset and controllers through it
  return device;
}

/** {supported: true} or {supported: false, reason, hint}: why VR is unavailable and what to do. */
export async function xrAvailability() {
  if (!window.isSecureContext) {
    return {
      supported: false,
      reason: 'VR needs a secure page',
      hint: `Browsers offer WebXR only on https:// pages (or localhost). This page is ${window.location.origin}. `
        + 'Start Parallax with ./scripts/run --lan and open the https:// address it prints.',
    };
  }
  if (!navigator.xr) {
    return {
      supported: false,
      reason: 'No WebXR in this browser',
      hint: 'Open this page in a VR headset\'s browser (Meta Quest Browser, Wolvic, Pico) or in '
        + 'Chrome/Edge with a PC headset connected.',
    };
  }
  let supported = false;
  try {
    supported = await navigator.xr.isSessionSupported('immersive-vr');
  } catch (error) {
    return { supported: false, reason: 'VR is blocked on this page', hint: `${error.name}: ${error.message}` };
  }
  if (!supported) {
    return {
      supported: false,
      reason: 'No VR headset found',
      hint: 'This browser has WebXR but reports no headset. Connect one (and start its PC software), '
        + 'or open this page in the headset\'s own browser.',
    };
  }
  return { supported: true };
}

/**
 * Fill `slot` with the Enter VR button (or the reason VR is unavailable). `onSession(session)`
 * hands a started session to the renderer; `onError(message)` shows why one could not start.
 */
export async function offerVR(slot, { onSession, onError }) {
  const availability = await xrAvailability();
  slot.replaceChildren();
  if (!availability.supported) {
    const note = document.createElement('span');
    note.id = 'vr-hint';
    note.className = 'vr-hint';
    note.dataset.reason = availability.reason;
    note.textContent = `${availability.reason} ⓘ`;
    note.title = availability.hint;
    note.tabIndex = 0;
    const detail = document.createElement('span');
    detail.className = 'vr-hint-detail';
    detail.textContent = availability.hint;
    note.append(detail);
    slot.append(note);
    return availability;
  }
  const button = document.createElement('button');
  button.id = 'vr-button';
  button.type = 'button';
  button.textContent = 'Enter VR';
  let session = null;
  button.addEventListener('click', async () => {
    if (session) {
      session.end();
      return;
    }
    button.disabled = true;
    try {
      session = await navigator.xr.requestSession('immersive-vr', SESSION_INIT);
      session.addEventListener('end', () => {
        session = null;
        button.textContent = 'Enter VR';
      });
      await onSession(session);
      button.textContent = 'Exit VR';
    } catch (error) {
      session?.end().catch(() => {});
      session = null;
      onError(`Could not start VR: ${error.message || error.name || error}`);
    } finally {
      button.disabled = false;
    }
  });
  slot.append(button);
  return availability;
}
