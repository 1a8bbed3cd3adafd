// A stand-in for the Anthropic Messages API, good enough for the Claude Code CLI.
//
// It listens on 127.0.0.1 on a free port and answers:
//   POST /v1/messages (stream: true)   -> SSE: message_start, content_block_start/delta/stop,
//                                         message_delta, message_stop
//   POST /v1/messages (stream: false)  -> one JSON message
//   POST /v1/messages/count_tokens     -> {"input_tokens": N}
//   HEAD / GET anything else           -> 200 {} (logged, so a test can see what the CLI asked)
//
// What the model "says" is a script: an array of steps. The step used for a request is the
// number of tool_result blocks already in the conversation, so a script
//   [{ bash: "echo hi" }, { text: "done" }]
// answers the first turn with a Bash tool_use and, once the CLI sends the tool_result back,
// ends with the text "done". Past the last step the last step is repeated. A request without
// tools (a side query the CLI may make) gets a short text answer and does not advance the script.
import http from 'node:http';

function countToolResults(messages) {
  let n = 0;
  for (const m of messages ?? []) {
    if (m.role !== 'user' || !Array.isArray(m.content)) continue;
    for (const block of m.content) if (block?.type === 'tool_result') n++;
  }
  return n;
}

function lastToolResultText(messages) {
  for (let i = (messages ?? []).length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.role !== 'user' || !Array.isArray(m.content)) continue;
    for (const block of m.content) {
      if (block?.type !== 'tool_result') continue;
      if (typeof block.content === 'string') return block.content;
      if (Array.isArray(block.content)) return block.content.map((c) => c.text ?? '').join('');
      return '';
    }
  }
  return null;
}

export async function startStandIn({ script = [{ text: 'done' }], log = !!process.env.SDK_LOG_API } = {}) {
  const requests = [];
  let seq = 0;

  const contentFor = (body) => {
    const hasTools = Array.isArray(body.tools) && body.tools.length > 0;
    if (!hasTools) return { content: [{ type: 'text', text: 'ok' }], stop: 'end_turn' };
    const i = Math.min(countToolResults(body.messages), script.length - 1);
    const step = script[i];
    if (step.bash !== undefined) {
      const input = { command: step.bash, description: step.description ?? 'stand-in command' };
      if (step.timeout) input.timeout = step.timeout;
      return {
        content: [
          ...(step.say ? [{ type: 'text', text: step.say }] : []),
          { type: 'tool_use', id: `toolu_standin_${++seq}`, name: 'Bash', input },
        ],
        stop: 'tool_use',
      };
    }
    const text = typeof step.text === 'function' ? step.text(lastToolResultText(body.messages)) : step.text;
    return { content: [{ type: 'text', text }], stop: 'end_turn' };
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body = null;
      try { body = raw ? JSON.parse(raw) : null; } catch { body = null; }
      const path = req.url.split('?')[0];
      requests.push({ method: req.method, url: req.url, path, body, at: Date.now() });
      if (log) process.stderr.write(`stand-in: ${req.method} ${req.url} ${raw.length}B\n`);

      if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ input_tokens: Math.ceil(raw.length / 4) }));
        return;
      }
      if (req.method === 'POST' && path === '/v1/messages' && body) {
        const { content, stop } = contentFor(body);
        const id = `msg_standin_${++seq}`;
        const usage = { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
        if (!body.stream) {
          res.writeHead(200, { 'content-type': 'application/json', 'request-id': `req_${id}` });
          res.end(JSON.stringify({ id, type: 'message', role: 'assistant', model: body.model, content,
            stop_reason: stop, stop_sequence: null, usage }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'request-id': `req_${id}` });
        const ev = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
        ev('message_start', { message: { id, type: 'message', role: 'assistant', model: body.model, content: [],
          stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } });
        content.forEach((block, index) => {
          if (block.type === 'text') {
            ev('content_block_start', { index, content_block: { type: 'text', text: '' } });
            ev('content_block_delta', { index, delta: { type: 'text_delta', text: block.text } });
          } else {
            ev('content_block_start', { index, content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} } });
            ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) } });
          }
          ev('content_block_stop', { index });
        });
        ev('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 5 } });
        ev('message_stop', {});
        res.end();
        return;
      }
      // Anything else: answer minimally and keep it in the log.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.method === 'HEAD' ? undefined : '{}');
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}
