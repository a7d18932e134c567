// The official TypeScript MCP client against a streamable-HTTP server: connect (initialize), list
// the tools, call the ones asked for, and print one JSON report on stdout.
//
// Usage: node client.mjs '{"url": "...", "headers": {...}, "calls": [{"name": "...", "arguments": {...}}]}'
// The report: {"server", "protocolVersion", "tools", "calls": [{"result"} | {"error"}]} or {"error"}
// when the connection itself fails. A tool error is a result (isError: true), a protocol error an error.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const request = JSON.parse(process.argv[2]);
const transport = new StreamableHTTPClientTransport(new URL(request.url), {
  requestInit: { headers: request.headers ?? {} },
});
const client = new Client({ name: "berth-interop-ts", version: "1.0.0" });
const report = {};

try {
  await client.connect(transport);
  report.server = client.getServerVersion();
  report.protocolVersion = transport.protocolVersion;
  report.tools = (await client.listTools()).tools;
  report.calls = [];
  for (const call of request.calls ?? []) {
    try {
      report.calls.push({ result: await client.callTool({ name: call.name, arguments: call.arguments ?? {} }) });
    } catch (error) {
      report.calls.push({ error: String(error?.message ?? error) });
    }
  }
} catch (error) {
  report.error = String(error?.message ?? error);
} finally {
  await client.close();
}
console.log(JSON.stringify(report));
