// Mounts the API reference on the served document. Everything the page loads comes from this
// server: no web fonts, no telemetry, no AI agent or MCP integration, no request proxy (the
// Content-Security-Policy enforces it as well).
Scalar.createApiReference('#app', {
  url: '/api/v1/openapi.json',
  withDefaultFonts: false,
  telemetry: false,
  agent: { disabled: true },
  mcp: { disabled: true },
  showDeveloperTools: 'never',
  hideClientButton: false,
  persistAuth: false,
  proxyUrl: '',
});
