// The transfer page: source tasks + target + image -> the transfer beside the target's own net.
"use strict";
let info = null;
let chosenExample = null;

function say(text, kind) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = kind || "";
}

function card(title, src, download) {
  const box = document.createElement("div");
  box.className = "card";
  box.dataset.name = title;
  const head = document.createElement("div");
  head.className = "title";
  head.textContent = title;
  const img = document.createElement("img");
  img.className = "out";
  img.src = src;
  img.alt = title;
  const link = document.createElement("a");
  link.href = src;
  link.download = download;
  link.textContent = "download PNG";
  box.append(head, img, link);
  return box;
}

function showTable() {
  const target = document.getElementById("target").value;
  const rows = Object.entries(info.affinities[target] || {}).sort((a, b) => b[1] - a[1]);
  const table = document.getElementById("table");
  table.replaceChildren();
  for (const [sources, value] of rows) {
    const line = document.createElement("div");
    line.textContent = `${sources.split("+").join(" + ")} \u2192 ${target}: ${value.toFixed(3)}`;
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
  const examples = document.getElementById("examples");
  all.examples.forEach((name, i) => {
    const img = document.createElement("img");
    img.src = "/api/example/" + i;
    img.alt = img.title = name;
    img.dataset.index = i;
    img.addEventListener("click", () => {
      chosenExample = chosenExample === i ? null : i;
      document.querySelectorAll(".examples img").forEach(
        (other) => other.classList.toggle("chosen", Number(other.dataset.index) === chosenExample));
      document.getElementById("file").value = "";
    });
    examples.appendChild(img);
  });
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
  else if (chosenExample !== null) data.append("example", chosenExample);
  else { say("Choose an image file or click an example first.", "error"); return; }
  const button = document.getElementById("run");
  button.disabled = true;
  say("Running (the first use of a source set trains its readout, some seconds)...");
  try {
    const response = await fetch("/api/taxonomy", { method: "POST", body: data });
    const result = await response.json();
    if (!response.ok) { say(result.error || response.statusText, "error"); return; }
    const outputs = document.getElementById("outputs");
    outputs.replaceChildren();
    const name = `${result.sources.join("+")}_to_${result.target}`;
    outputs.appendChild(card("input", result.images.input, `${name}_input.png`));
    outputs.appendChild(card(`transfer ${result.sources.join(" + ")} \u2192 ${result.target}`,
                             result.images.transfer, `${name}_transfer.png`));
    outputs.appendChild(card(`${result.target}'s own network`, result.images.own,
                             `${name}_own.png`));
    if (result.images.truth) outputs.appendChild(card("ground truth", result.images.truth,
                                                      `${name}_truth.png`));
    const affinity = result.affinity === null ? "not evaluated in the run (only the beam's " +
      "candidates were)" : result.affinity.toFixed(3);
    say(`${result.name}: affinity ${affinity}` + (result.trained_now ?
        ` (readout trained now, ${result.seconds} s)` : ""));
    document.body.dataset.shown = String(Number(document.body.dataset.shown || 0) + 1);
  } catch (error) {
    say("The server did not answer: " + error, "error");
  } finally {
    button.disabled = false;
  }
}

document.getElementById("form").addEventListener("submit", run);
load().catch((error) => say("Could not load: " + error, "error"));
