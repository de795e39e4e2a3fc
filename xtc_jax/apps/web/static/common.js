// What both pages share: messages, output cards with a PNG download, the example picker.
"use strict";

function say(element, text, kind) {
  element.textContent = text;
  element.className = kind || "";
}

// A titled image with its download link; extra: "figure" (a wide plot) or an element shown
// under the image (the energy's colour scale). data-name: `name`, else the file's stem.
function card(title, src, download, extra, name) {
  const box = document.createElement("div");
  box.className = "card";
  box.dataset.name = name || download.replace(/\.png$/, "");
  const head = document.createElement("div");
  head.className = "title";
  head.textContent = title;
  const img = document.createElement("img");
  img.className = extra === "figure" ? "figure" : "out";
  img.src = src;
  img.alt = title;
  box.append(head, img);
  if (extra && extra !== "figure") box.appendChild(extra);
  const link = document.createElement("a");
  link.href = src;
  link.download = download;
  link.textContent = "download PNG";
  box.appendChild(link);
  return box;
}

// Thumbnails of the server's examples in `box`; clicking one chooses it (again: unchooses)
// and clears the file input. Returns a function giving the chosen index, or null.
function examplePicker(box, names, fileInput) {
  let chosen = null;
  names.forEach((name, i) => {
    const img = document.createElement("img");
    img.src = "/api/example/" + i;
    img.alt = img.title = name;
    img.dataset.index = i;
    img.addEventListener("click", () => {
      chosen = chosen === i ? null : i;
      box.querySelectorAll("img").forEach(
        (other) => other.classList.toggle("chosen", Number(other.dataset.index) === chosen));
      fileInput.value = "";
    });
    box.appendChild(img);
  });
  return () => chosen;
}
