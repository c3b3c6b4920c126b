// voxpool through the official OpenAI Node SDK: only `baseURL` changes.
//
//   npm install openai
//   node examples/openai_node.mjs [outDir]
//
// Writes speech.mp3 (a whole response, OpenAI's default format) and streamed.pcm
// (raw 24 kHz 16-bit mono, read chunk by chunk as each sentence is spoken). The
// server address comes from VOXPOOL_URL (default http://localhost:5005/v1);
// VOXPOOL_API_KEY is sent as the bearer token when the server asks for one.
import fs from "node:fs";
import path from "node:path";
import OpenAI from "openai";

const outDir = process.argv[2] ?? ".";
const client = new OpenAI({
  baseURL: process.env.VOXPOOL_URL ?? "http://localhost:5005/v1",
  apiKey: process.env.VOXPOOL_API_KEY ?? "not-needed",
});
const input = "Hello from voxpool. This sentence is streamed after the first.";
fs.mkdirSync(outDir, { recursive: true });

// A whole file.
const speech = await client.audio.speech.create({ model: "tts-1", voice: "alloy", input });
fs.writeFileSync(path.join(outDir, "speech.mp3"), Buffer.from(await speech.arrayBuffer()));

// Streamed: each chunk is written as it arrives.
const streamed = await client.audio.speech.create({
  model: "tts-1", voice: "alloy", input, response_format: "pcm",
});
const out = fs.createWriteStream(path.join(outDir, "streamed.pcm"));
let chunks = 0;
for await (const chunk of streamed.body) {
  out.write(chunk);
  chunks += 1;
}
await new Promise((resolve) => out.end(resolve));

for (const name of ["speech.mp3", "streamed.pcm"]) {
  console.log(`${path.join(outDir, name)}: ${fs.statSync(path.join(outDir, name)).size} bytes`);
}
console.log(`streamed in ${chunks} chunks`);
