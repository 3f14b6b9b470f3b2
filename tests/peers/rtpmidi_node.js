// node-rtpmidi (npm rtpmidi@1.0.0) as an interop peer for tests/test_rtpmidi_interop.py.
// usage: node rtpmidi_node.js PORT [CONNECT_PORT] [6]   (6: IPv6, ::1)
// Prints "@@ {json}" lines (ready, connected, disconnected, midi); reads JSON byte arrays on
// stdin and sends each as one MIDI message. Its own log lines go to stdout unprefixed.
const readline = require('readline');
const rtpmidi = require('rtpmidi');

const port = parseInt(process.argv[2], 10);
const target = process.argv[3] ? parseInt(process.argv[3], 10) : null;
const ipVersion = process.argv[4] === '6' ? 6 : 4;
const out = (event) => process.stdout.write(`@@ ${JSON.stringify(event)}\n`);

const session = rtpmidi.manager.createSession({
  localName: 'node-session', bonjourName: 'node-rtpmidi', port, published: false, activated: true,
  ipVersion,
});
session.on('message', (dt, message) => out({ event: 'midi', bytes: Array.from(message) }));
session.on('streamAdded', (e) => out({ event: 'connected', name: e.stream.name }));
session.on('streamRemoved', () => out({ event: 'disconnected' }));
session.on('ready', () => {
  out({ event: 'ready' });
  if (target) session.connect({ address: ipVersion === 6 ? '::1' : '127.0.0.1', port: target });
});
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  // Only the (timestamp, array) form works in 1.0.0; it sends nothing before one CK exchange.
  session.sendMessage(session.now(), JSON.parse(line));
});
process.stdin.on('end', () => process.exit(0));
