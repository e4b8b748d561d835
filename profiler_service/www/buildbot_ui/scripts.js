// buildbot-profiler: the "Profiler" page of Buildbot's React UI (Buildbot 4).
// Buildbot loads plugins/profiler/scripts.js for a configured plugin; this file
// registers a menu entry and a route through window.BuildbotPluginSupport,
// using the React the UI already carries (plain JS, no build step). The page
// is a control panel (start, status, stop, the profile files) above an iframe
// of the viewer at plugins/profiler/: the viewer is a standalone page with its
// own styles, and the iframe keeps them apart from Buildbot's.
(function () {
  'use strict';
  const support = window.BuildbotPluginSupport;
  const React = window.React;
  if (!support || !React) {
    console.warn('buildbot-profiler: not a Buildbot 4 React UI; the Profiler page is not registered');
    return;
  }
  const h = React.createElement;
  const { useState, useEffect, useRef, useCallback } = React;
  const BASE = new URL('./', (document.currentScript && document.currentScript.src) ||
                       new URL('plugins/profiler/scripts.js', location.href)).href;
  const API = BASE + 'api/';

  async function call(path, body) {
    const init = body === undefined ? { credentials: 'same-origin' } : {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    };
    const response = await fetch(API + path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const message = (data && data.error) || (response.status + ' ' + response.statusText);
      const err = new Error(message);
      err.status = response.status;
      throw err;
    }
    return data;
  }

  const seconds = (s) => (s >= 90 ? Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s' : Math.round(s) + ' s');
  const kib = (n) => (n >= 1048576 ? (n / 1048576).toFixed(1) + ' MiB' : (n / 1024).toFixed(1) + ' KiB');
  const when = (ms) => (ms ? new Date(ms).toLocaleString() : '');

  function StatusLine({ status }) {
    if (!status) return h('span', { 'data-bbprof': 'state' }, 'loading…');
    if (!status.available) {
      return h('span', { className: 'bbprof-problem', 'data-bbprof': 'state' },
               'Recording is unavailable: ' + status.problem);
    }
    const rec = status.recording;
    if (rec) {
      return h('span', { 'data-bbprof': 'state', 'data-recording': 'yes' },
        h('b', null, 'Recording'), ': ' + rec.samples + ' samples so far, ' + seconds(rec.time_left) +
        ' left (' + rec.mode + ', ' + rec.frequency + ' Hz)',
        rec.conflict ? h('span', { className: 'bbprof-note' }, ' — ' + rec.conflict) : null);
    }
    if (status.writing) return h('span', { 'data-bbprof': 'state' }, 'Writing the recording…');
    const last = status.last;
    return h('span', { 'data-bbprof': 'state', 'data-recording': 'no' }, 'Not recording.',
      last ? (last.name ? ' Last recording: ' + last.name + ' (' + last.samples + ' samples, ' + last.reason + ').'
                        : ' Last recording: ' + (last.error || 'no file') + '.') : null);
  }

  function ServiceLine({ services }) {
    if (!services || services.length === 0) {
      return h('div', { className: 'bbprof-service' },
               'No ProfilerService in c[\'services\']: only recordings started here are listed.');
    }
    return h('div', { className: 'bbprof-service' }, services.map((s) => h('div', { key: s.name },
      'ProfilerService ' + JSON.stringify(s.name) + ': ' +
      (s.sampling ? 'sampling (' + s.mode + ', ' + s.frequency + ' Hz)' : 'not sampling') +
      (s.basepath ? ', files ' + s.basepath + '*' : ''),
      h(RecentStalls, { service: s }))));
  }

  // The reactor's latest stalls, newest first (the service keeps 20).
  function RecentStalls({ service }) {
    if (!service.sampling || service.stall_threshold == null) return null;
    const stalls = service.recent_stalls || [];
    if (stalls.length === 0) {
      return h('div', { 'data-bbprof': 'stalls' }, 'No reactor stall over ' + service.stall_threshold + ' s yet.');
    }
    return h('div', { 'data-bbprof': 'stalls' }, 'Recent reactor stalls:',
      h('ul', { className: 'bbprof-stalls' }, stalls.map((st, i) => h('li', { key: i, 'data-stall': st.duration_s },
        h('b', null, st.duration_s.toFixed(2) + ' s'), ' ended ' + when(st.ended * 1000) + ': ' +
        (st.busy_thread ? "thread '" + st.busy_thread + "' held the GIL in " : 'in ') + st.where))));
  }

  function Files({ files, onOpen, error }) {
    if (error) return h('div', { className: 'bbprof-problem' }, 'Profiles: ' + error);
    if (!files) return null;
    if (files.length === 0) return h('div', null, 'No profile files yet.');
    return h('table', { className: 'table table-sm bbprof-files' },
      h('thead', null, h('tr', null, ['File', 'Time', 'Samples', 'Size', ''].map((t) => h('th', { key: t }, t)))),
      h('tbody', null, files.map((f) => h('tr', { key: f.name, 'data-file': f.name },
        h('td', null, f.name),
        h('td', null, when(f.start_ms)),
        h('td', null, f.error ? f.error : (f.samples == null ? '' : String(f.samples))),
        h('td', null, kib(f.size)),
        h('td', null,
          h('button', { className: 'btn btn-link btn-sm', onClick: () => onOpen(f.name) }, 'Open'),
          h('a', { className: 'btn btn-link btn-sm', href: API + 'profiles/' + encodeURIComponent(f.name) + '?download=1',
                   download: f.name }, 'Download'))))));
  }

  function ProfilerPage() {
    const [status, setStatus] = useState(null);
    const [files, setFiles] = useState(null);
    const [filesError, setFilesError] = useState(null);
    const [message, setMessage] = useState(null);
    const [frequency, setFrequency] = useState('');
    const [duration, setDuration] = useState('');
    const [busy, setBusy] = useState(false);
    const frame = useRef(null);
    const [viewerSrc] = useState(BASE);

    const refresh = useCallback(async () => {
      try {
        const s = await call('status');
        setStatus(s);
        setFrequency((v) => (v === '' ? String(s.defaults.frequency) : v));
        setDuration((v) => (v === '' ? String(s.defaults.duration) : v));
      } catch (e) {
        setMessage({ error: true, text: 'Status: ' + e.message });
      }
    }, []);

    const refreshFiles = useCallback(async () => {
      try {
        const list = await call('profiles');
        setFiles(list.profiles);
        setFilesError(null);
      } catch (e) {
        setFilesError(e.message);
      }
    }, []);

    useEffect(() => {
      refresh();
      refreshFiles();
      const timer = setInterval(refresh, 1000);
      return () => clearInterval(timer);
    }, [refresh, refreshFiles]);

    // A recording that ended by itself (duration reached): show its file.
    const wasRecording = useRef(false);
    useEffect(() => {
      const recording = !!(status && (status.recording || status.writing));
      if (wasRecording.current && !recording) {
        refreshFiles();
        if (status.last && status.last.name) openInViewer(status.last.name);
      }
      wasRecording.current = recording;
    }, [status]);

    function openInViewer(name) {
      const win = frame.current && frame.current.contentWindow;
      if (win && win.bbprofiler && win.bbprofiler.open) {
        win.bbprofiler.open(name);
      } else if (frame.current) {
        frame.current.src = BASE + '?profile=' + encodeURIComponent(name);
      }
    }

    async function start() {
      setBusy(true);
      try {
        const reply = await call('start', { frequency: Number(frequency), duration: Number(duration) });
        setMessage(reply.clamped.length ? { text: 'Started; ' + reply.clamped.join('; ') } : { text: 'Started.' });
        setStatus(reply.status);
      } catch (e) {
        setMessage({ error: true, text: 'Start: ' + e.message });
      } finally {
        setBusy(false);
      }
    }

    async function stop() {
      setBusy(true);
      try {
        const reply = await call('stop', {});
        wasRecording.current = false;  // handled here, not by the effect
        setStatus(reply.status);
        const last = reply.last;
        setMessage(last.name ? { text: 'Stopped: ' + last.name + ' (' + last.samples + ' samples).' }
                             : { error: true, text: 'Stopped: ' + (last.error || 'no file written') });
        await refreshFiles();
        if (last.name) openInViewer(last.name);
      } catch (e) {
        setMessage({ error: true, text: 'Stop: ' + e.message });
      } finally {
        setBusy(false);
      }
    }

    const recording = !!(status && status.recording);
    const limits = status ? status.limits : null;
    return h('div', { className: 'container-fluid bbprof-page' },
      h('div', { className: 'bbprof-controls' },
        h('label', null, 'Frequency (Hz) ',
          h('input', { type: 'number', id: 'bbprof-frequency', value: frequency, disabled: recording,
                       min: limits ? limits.frequency[0] : 1, max: limits ? limits.frequency[1] : undefined,
                       onChange: (e) => setFrequency(e.target.value) })),
        h('label', null, 'Duration (s) ',
          h('input', { type: 'number', id: 'bbprof-duration', value: duration, disabled: recording,
                       min: limits ? limits.duration[0] : 1, max: limits ? limits.duration[1] : undefined,
                       onChange: (e) => setDuration(e.target.value) })),
        h('button', { className: 'btn btn-primary btn-sm', id: 'bbprof-start',
                      disabled: busy || recording || !(status && status.available), onClick: start }, 'Start recording'),
        h('button', { className: 'btn btn-danger btn-sm', id: 'bbprof-stop',
                      disabled: busy || !recording, onClick: stop }, 'Stop'),
        h(StatusLine, { status })),
      message ? h('div', { className: message.error ? 'bbprof-problem' : 'bbprof-note', id: 'bbprof-message' },
                  message.text) : null,
      h(ServiceLine, { services: status && status.services }),
      h('details', { className: 'bbprof-files-box' },
        h('summary', null, 'Profile files', files ? ' (' + files.length + ')' : ''),
        h(Files, { files, error: filesError, onOpen: openInViewer })),
      h('iframe', { ref: frame, src: viewerSrc, title: 'profile viewer', className: 'bbprof-viewer',
                    id: 'bbprof-viewer' }));
  }

  const icon = h('svg', { width: 16, height: 16, viewBox: '0 0 16 16', 'aria-hidden': true },
    h('path', { d: 'M1 14h14v1H1zM2 9h3v4H2zM6 3h3v10H6zM10 6h3v7h-3z', fill: 'currentColor' }));

  support.buildbotSetupPlugin((reg) => {
    reg.registerMenuGroup({
      name: 'profiler', caption: 'Profiler', icon, order: 80, route: '/profiler', parentName: null,
    });
    reg.registerRoute({ route: '/profiler', group: 'profiler', element: () => h(ProfilerPage) });
  });
})();
