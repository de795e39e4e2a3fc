// The transfer page: source tasks + target + image -> the transfer beside the target's own net.
// (say, card and examplePicker are in common.js.)
"use strict";
let info = null;
let chosenExample = () => null;
// Affinities are shares of 1: three decimals, or two significant digits below 0.001.
const shown = (value) => (value > 0 && value < 0.001 ? value.toExponential(1) : value.toFixed(3));
const message = () => document.getElementById("message");

function showTable() {
  const target = document.getElementById("target").value;
  const rows = Object.entries(info.affinities[target] || {}).sort((a, b) => b[1] - a[1]);
  const table = document.getElementById("table");
  table.replaceChildren();
  for (const [sources, value] of rows) {
    const line = document.createElement("div");
    line.textContent = `${sources.split("+").join(" + ")} \u2192 ${target}: ${shown(value)}`;
    table.appendChild(line);
  }
  if (!rows.length) table.textContent = "The run has no affinity table yet.";
}

async function load() {
  const all = await (await fetch("/api/info")).json();
  info = all.taxonomy;
  const sources = document.getElementById("sources");
  const target = document.getElementById("target");
  info.tasks.forEach((task, i) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = task;
    box.name = "source";
    label.append(box, " " + task + "  ");
    sources.appendChild(label);
    const option = document.createElement("option");
    option.value = option.textContent = task;
    target.appendChild(option);
  });
  target.addEventListener("change", showTable);
  chosenExample = examplePicker(document.getElementById("examples"), all.examples,
                                document.getElementById("file"));
  showTable();
  document.body.dataset.ready = "1";
}

async function run(event) {
  event.preventDefault();
  const chosen = [...document.querySelectorAll("#sources input:checked")].map((b) => b.value);
  const data = new FormData();
  data.append("target", document.getElementById("target").value);
  data.append("sources", chosen.join(","));
  const file = document.getElementById("file").files[0];
  if (file) data.append("file", file);
  else if (chosenExample() !== null) data.append("example", chosenExample());
  else { say(message(), "Choose an image file or click an example first.", "error"); return; }
  const button = document.getElementById("run");
  button.disabled = true;
  say(message(), "Running (the first use of a source set trains its readout, some seconds)...");
  try {
    const response = await fetch("/api/taxonomy", { method: "POST", body: data });
    const result = await response.json();
    if (!response.ok) { say(message(), result.error || response.statusText, "error"); return; }
    const outputs = document.getElementById("outputs");
    outputs.replaceChildren();
    const name = `${result.sources.join("+")}_to_${result.target}`;
    outputs.appendChild(card("input", result.images.input, `${name}_input.png`, null, "input"));
    const titles = [["transfer", `transfer ${result.sources.join(" + ")} \u2192 ${result.target}`],
                    ["own", `${result.target}'s own network`], ["truth", "ground truth"]];
    for (const [key, title] of titles) {
      if (result.images[key]) {
        outputs.appendChild(card(title, result.images[key], `${name}_${key}.png`, null, title));
      }
    }
    const affinity = result.affinity === null ? "not evaluated in the run (only the beam's " +
      "candidates were)" : shown(result.affinity);
    say(message(), `${result.name}: affinity ${affinity}` + (result.trained_now ?
        ` (readout trained now, ${result.seconds} s)` : ""));
    document.body.dataset.shown = String(Number(document.body.dataset.shown || 0) + 1);
  } catch (error) {
    say(message(), "The server did not answer: " + error, "error");
  } finally {
    button.disabled = false;
  }
}

document.getElementById("form").addEventListener("submit", run);
load().catch((error) => say(message(), "Could not load: " + error, "error"));
