// The consistency page: upload or pick an example, run, show every output with a PNG download.
// (say, card and examplePicker are in common.js.)
"use strict";
let chosenExample = () => null;

function scale(energy) {
  const row = document.createElement("div");
  row.className = "scale";
  const low = document.createElement("span");
  low.textContent = energy.low.toFixed(1);
  const bar = document.createElement("img");
  bar.src = "/api/colour_bar.png";
  bar.alt = "colour scale";
  const high = document.createElement("span");
  high.textContent = energy.high.toFixed(1) + " MADs";
  row.append(low, bar, high);
  return row;
}

async function loadInfo() {
  const info = await (await fetch("/api/info")).json();
  const task = document.getElementById("task");
  for (const name of info.tasks) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    task.appendChild(option);
  }
  chosenExample = examplePicker(document.getElementById("examples"), info.examples,
                                document.getElementById("file"));
  document.getElementById("max-frames").textContent = info.max_video_frames;
  if (info.taxonomy) document.getElementById("taxonomy-link").hidden = false;
  document.body.dataset.ready = "1";
}

async function run(event) {
  event.preventDefault();
  const message = document.getElementById("message");
  const file = document.getElementById("file").files[0];
  const data = new FormData();
  data.append("task", document.getElementById("task").value);
  if (file) data.append("file", file);
  else if (chosenExample() !== null) data.append("example", chosenExample());
  else { say(message, "Choose an image file or click an example first.", "error"); return; }
  const button = document.getElementById("run");
  button.disabled = true;
  say(message, "Running (queued behind other uploads if there are any)...");
  try {
    const response = await fetch("/api/predict", { method: "POST", body: data });
    const result = await response.json();
    if (!response.ok) { say(message, result.error || response.statusText, "error"); return; }
    show(result);
    say(message, `${result.name}: ${result.task} at ${result.resolution} px` +
        (result.note ? ` (${result.note})` : ""), result.note ? "note" : "");
  } catch (error) {
    say(message, "The server did not answer: " + error, "error");
  } finally {
    button.disabled = false;
  }
}

function show(result) {
  const outputs = document.getElementById("outputs");
  const paths = document.getElementById("paths");
  outputs.replaceChildren();
  paths.replaceChildren();
  const stem = result.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_-]+/g, "_");
  const images = result.images;
  for (const [key, title] of result.cards) {
    const file = key === "input" ? `${stem}_input.png` : `${stem}_${result.task}_${key}.png`;
    let extra;
    if (key === "reference") extra = "figure";
    else if (key === "energy" && result.energy && result.energy.low !== undefined) {
      extra = scale(result.energy);
    }
    outputs.appendChild(card(title, images[key], file, extra));
  }
  for (const [middle, src] of Object.entries(result.paths)) {
    paths.appendChild(card(`via ${middle}`, src, `${stem}_${result.task}_via_${middle}.png`));
  }
  document.getElementById("paths-title").hidden = Object.keys(result.paths).length === 0;
  document.getElementById("results").hidden = false;
  document.body.dataset.shown = String(Number(document.body.dataset.shown || 0) + 1);
}

async function makeVideo() {
  const message = document.getElementById("video-message");
  const file = document.getElementById("video-file").files[0];
  if (!file) { say(message, "Choose a video file first.", "error"); return; }
  const data = new FormData();
  data.append("task", document.getElementById("task").value);
  data.append("file", file);
  say(message, "Running the models on every frame...");
  const response = await fetch("/api/video", { method: "POST", body: data });
  if (!response.ok) { say(message, (await response.json()).error, "error"); return; }
  const video = document.getElementById("video");
  video.src = URL.createObjectURL(await response.blob());
  video.hidden = false;
  say(message, "input | baseline | consistency | energy");
}

document.getElementById("form").addEventListener("submit", run);
document.getElementById("video-run").addEventListener("click", makeVideo);
loadInfo().catch((error) => say(document.getElementById("message"), "Could not load: " + error,
                                "error"));
