// Loaded with `node --require` before Portkey's gateway (see benchmarks/peers.py): its 1.15.2 build appends
// headers to the upstream's fetch() response, whose headers are immutable on Node 20 (Portkey-AI/gateway#1389).
const upstreamFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const response = await upstreamFetch(...args);
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};
