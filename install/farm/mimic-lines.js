// Flamenco job type "Mimic Lines": the lines of a Mimic lines manifest in chunks, one task per
// chunk, each task one `blender -b --command mimic lines CHARACTER.blend --from A --to B ...`
// (one Blender, one warm backend for the whole chunk). The same parameters as the Open Job
// Description template beside it (mimic-lines/template.yaml). Install: copy this file into the
// `scripts` folder next to the flamenco-manager executable; the workers' Blender needs the Mimic
// extension enabled. See docs/farm.md. Tasks are resumable: a task run again skips the lines
// that are complete.

const JOB_TYPE = {
    label: "Mimic Lines",
    description: "Animate every line of a Mimic lines manifest on a character, in chunks of lines",
    settings: [
        { key: "manifest", type: "string", subtype: "file_path", required: true,
          description: "The lines, .csv or .json; audio and style files relative to its folder" },
        { key: "output_dir", type: "string", subtype: "dir_path", required: true,
          description: "Where each line's outputs, completion records and the chunks' summaries go" },
        { key: "line_count", type: "int32", required: true, propargs: { min: 1 },
          description: "Lines in the manifest (`python -m mimic_blender.core.manifest MANIFEST` prints it)" },
        { key: "chunk_size", type: "int32", default: 25, propargs: { min: 1 },
          description: "Lines per task (each task starts Blender and the backend once)" },
        { key: "device", type: "string", choices: ["auto", "cpu", "cuda", "mps"], default: "auto",
          description: "Where the backend runs the network (auto picks CUDA when the worker has it)" },
        { key: "export", type: "string", choices: ["blend", "gltf", "both"], default: "blend",
          description: "Per line a .blend, a .glb (morph targets + weights animation), or both" },
        { key: "target", type: "string", default: "",
          description: "The head mesh object (empty: the file's active object, or its only mesh)" },
        { key: "style", type: "string", default: "",
          description: "Style of the lines without one: a library style's name or a style file's absolute path" },
        { key: "checkpoint", type: "string", default: "",
          description: "The model on the worker (empty: the add-on's Preferences there)" },
        { key: "backend_python", type: "string", default: "",
          description: "The backend interpreter on the worker (empty: the add-on's Preferences there)" },

        // Set by the submission: the character file, and how workers run Blender.
        { key: "blendfile", type: "string", required: true, visible: false,
          description: "The character .blend (its head mesh is the target)" },
        { key: "blender_cmd", type: "string", default: "{blender}", visible: false },
    ],
};

function compileJob(job) {
    const settings = job.settings;
    const count = settings.line_count, size = settings.chunk_size;
    if (!(Number.isInteger(count) && count >= 1)) {
        throw `line_count must be a whole number of lines, at least 1; got ${count}`;
    }
    if (!(Number.isInteger(size) && size >= 1)) {
        throw `chunk_size must be a whole number of lines, at least 1; got ${size}`;
    }
    for (let first = 1; first <= count; first += size) {
        const last = Math.min(first + size - 1, count);
        const task = author.Task(`lines-${first}-${last}`, "blender");
        task.addCommand(author.Command("blender-render", {
            exe: settings.blender_cmd,
            exeArgs: "{blenderArgs}",
            argsBefore: ["--command", "mimic", "lines"],
            blendfile: settings.blendfile,
            args: linesArgs(settings, first, last),
        }));
        job.addTask(task);
    }
}

// The options of `mimic lines` after the .blend, for lines first..last.
function linesArgs(settings, first, last) {
    const args = ["--manifest", settings.manifest, "--out", settings.output_dir, "--from", `${first}`,
                  "--to", `${last}`, "--export", settings.export, "--device", settings.device];
    const optional = { "--target": settings.target, "--style": settings.style,
                       "--checkpoint": settings.checkpoint, "--python": settings.backend_python };
    for (const [option, value] of Object.entries(optional)) {
        if (value) {
            args.push(option, value);
        }
    }
    return args;
}
