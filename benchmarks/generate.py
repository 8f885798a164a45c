"""Benchmark of the whole generation path on the full-size network (`make bench`).

    .venv/bin/python -m benchmarks.generate [--seconds 20,60]

Everything runs in one go on the CPU, on real speech (the LibriVox clips of pocketsphinx-testdata,
one after the other, repeated to the length asked for), with a full-size official-format checkpoint
of random weights written first (every key and shape of the released file, the unused decoder parts
included; the config of tests/fixtures scaled up to the 3D-HDTF model; `motion_out` drawn from
N(0, 2e-4) so that every frame feeds the next and vertices move by up to about a centimetre).

1. Whole processes, timed from start to exit: `mimic generate` (fp32, and `--precision fast`);
   the official loop (start-up as the official code's: the transformers namespace, the whole file
   read, transformers' Wav2Vec2Model initialised at random and then loaded; then per window the
   audio encoder alone and the official decoder that re-runs the whole prefix at every frame); wav2vec 2.0 base alone
   (transformers' Wav2Vec2Model) on the same windows, batched as the generator batches them (timed
   inside its process, warmed up).
2. Precision: the generator (audio encoder + decoder) at every precision this machine supports,
   against fp32: time and the largest vertex deviation.
3. Cancel: a real `mimic serve`, a 60 s generate cancelled in each stage; seconds from the cancel
   line to the `cancelled` reply.
4. The button: the add-on's job in real Blender on 10 s of speech, cold and warm (benchmarks/click.py).

Each timing shows the share of the machine's CPU that other processes took meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.clock import Clock
from benchmarks.serve_driver import Serve

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
RATE = 16000
VERTICES = 5023
REPEAT = 2  # default runs of each process and of each in-process timing; the fastest is shown
CLICK_SECONDS = 10.0  # of speech, for the button's job on a warm backend
MOTION_STD = 2e-4  # of the random output map: vertices move by up to about a centimetre, as in speech


# ---------------------------------------------------------------------------------- inputs


def write_checkpoint(path: Path) -> None:
    """A full-size official-format .pth with random weights."""

    from mimic.checkpoint import config_from_official, official_to_ours
    from mimic.model import Mimic

    keys = json.loads((FIXTURES / "official_full_keys.json").read_text())
    params = torch.load(FIXTURES / "official_tiny" / "checkpoint.pth", weights_only=True)["params"]
    params["NETWORK"].update(
        motion_dim=3 * VERTICES, feature_dim=128, hidden_size=128, num_conv_layers=5, encoder_layers=4,
        nhead_encoder=4, dim_feedforward=256, audio_hidden_size=768, wav2vec2model="facebook/wav2vec2-base-960h")
    params["NETWORK"]["decoder"].update(nhead=4, dim_feedforward=256)
    params["DATA"]["train_ids"] = 150
    torch.manual_seed(0)
    model = Mimic(config_from_official(params, path.parent))
    torch.nn.init.normal_(model.decoder.motion_out.weight, std=MOTION_STD)
    torch.nn.init.normal_(model.decoder.motion_out.bias, std=MOTION_STD)
    ours = model.state_dict()
    state = {}
    for key, shape in keys.items():
        name = next(iter(official_to_ours({key: None})), None)  # None: a key the loader ignores
        state[key] = ours[name] if name in ours else 0.02 * torch.randn(shape)
        assert list(state[key].shape) == shape, key
    torch.save({"params": params, "model": state}, path)


def write_inputs(folder: Path, lengths: list[float]) -> dict:
    import soundfile

    clips = [soundfile.read(f, dtype="float32")[0] for f in sorted(LIBRIVOX.glob("*.wav"))]
    speech = np.concatenate(clips)
    speech = np.tile(speech, int(np.ceil(max(*lengths, CLICK_SECONDS) * RATE / len(speech))))
    files = {"checkpoint": folder / "checkpoint.pth", "template": folder / "template.npy",
             "style": folder / "style.npy"}
    rng = np.random.default_rng(0)
    template = (0.05 * rng.standard_normal((VERTICES, 3))).astype(np.float32)
    np.save(files["template"], template)
    np.save(files["style"], template + (1e-3 * rng.standard_normal((150, VERTICES, 3))).astype(np.float32))
    for seconds in {*lengths, CLICK_SECONDS}:
        files[seconds] = folder / f"speech-{seconds:g}s.wav"
        soundfile.write(files[seconds], speech[:int(seconds * RATE)], RATE, subtype="FLOAT")
    write_checkpoint(files["checkpoint"])
    return files


def timed_process(*args: str, repeat: int) -> tuple[Clock, dict]:
    """Run a Python process `repeat` times; the fastest run's clock and the JSON it printed last
    on stdout (if any). The fastest run is the one least disturbed by other processes."""
    runs = []
    for _ in range(repeat):
        with Clock() as clock:
            run = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
        if run.returncode != 0:
            raise SystemExit(f"{' '.join(args[:3])} failed ({run.returncode}):\n{run.stderr[-3000:]}")
        lines = run.stdout.strip().splitlines()
        runs.append((clock, json.loads(lines[-1]) if lines else {}))
    return min(runs, key=lambda r: r[0].seconds)


# ------------------------------------------------------------------ roles (own processes)


class OfficialBackbone(torch.nn.Module):
    """transformers' Wav2Vec2Model, the official code's audio backbone, in the parts that
    `AudioEncoder.forward` calls on mimic.wav2vec2's."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def feature_extractor(self, audio):
        return self.model.feature_extractor(audio)

    def feature_projection(self, x):
        return self.model.feature_projection(x)[0]

    def spec_augment(self, x):
        return x

    def encoder(self, x):
        return self.model.encoder(x).last_hidden_state


def role_official(checkpoint: str, audio_file: str, style_file: str, template_file: str, out: str) -> None:
    """The official demo loop, started the way the official code starts: the transformers namespace,
    the whole file read, transformers' Wav2Vec2Model initialised at random and then loaded (the rest of
    the network, small, is built without an initialisation)."""
    import transformers

    from mimic.checkpoint import config_from_official, official_to_ours
    from mimic.files import load_audio
    from mimic.generate import normalise, plan_windows
    from mimic.model import Mimic

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)  # the whole file read
    with torch.device("meta"):
        model = Mimic(config_from_official(raw["params"], Path(checkpoint).parent))
    model = model.to_empty(device="cpu")
    model.load_state_dict(official_to_ours(raw["model"]), strict=True)
    model.eval()
    official = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config.from_dict(model.config.audio_model))
    official.load_state_dict(model.audio_encoder.backbone.state_dict(), strict=True)
    model.audio_encoder.backbone = OfficialBackbone(official.eval())
    config = model.config
    audio = load_audio(audio_file, config.sample_rate)
    template = np.load(template_file)
    encoder = decoder = 0.0
    with torch.inference_mode():
        style = model.encode_style(torch.from_numpy(np.load(style_file) - template).reshape(1, -1, config.motion_dim))
        init_state, chunks = torch.zeros(1, config.motion_dim), []
        step = config.samples_per_frame
        for w in plan_windows(len(audio) // step, config.window, config.overlap):
            started = time.perf_counter()
            window = torch.from_numpy(normalise(audio[w.start * step:w.end * step]))[None]
            features = model.audio_encoder(window, w.frames)
            encoded = time.perf_counter()
            motion = model.decoder.forward_recompute(features, style, init_state)[0]  # (n, M)
            decoder += time.perf_counter() - encoded
            encoder += encoded - started
            init_state = motion[-min(config.overlap, len(motion))][None]
            chunks.append(motion[w.keep:].reshape(-1, config.vertex_count, 3).numpy())
    np.save(out, np.concatenate(chunks) + template)
    print(json.dumps({"generation": encoder + decoder, "encoder": encoder, "decoder": decoder}))


def role_wav2vec2(audio_file: str) -> None:
    """wav2vec 2.0 base alone (transformers, random weights) on the generator's windows and batches."""
    import soundfile
    from transformers.models.wav2vec2.configuration_wav2vec2 import Wav2Vec2Config
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2Model

    from mimic.generate import BATCH_WINDOWS, batches, normalise, plan_windows
    from mimic.model import MimicConfig

    c = MimicConfig()
    model = Wav2Vec2Model(Wav2Vec2Config.from_dict(c.audio_model)).eval()
    audio = soundfile.read(audio_file, dtype="float32")[0]
    step = c.samples_per_frame
    windows = plan_windows(len(audio) // step, c.window, c.overlap)
    inputs = [torch.from_numpy(np.stack([normalise(audio[w.start * step:w.end * step]) for w in group]))
              for group in batches(windows, BATCH_WINDOWS)]
    with torch.inference_mode():
        model(inputs[0][:1])  # warm-up
        started = time.perf_counter()
        for batch in inputs:
            model(batch)
    print(json.dumps({"wav2vec2": time.perf_counter() - started, "windows": len(windows)}))


ROLES = {"official": role_official, "wav2vec2": role_wav2vec2}


# ------------------------------------------------------------------------------ the tables


def whole_processes(files: dict, seconds: float, tmp: Path, repeat: int) -> dict:
    audio, rows = str(files[seconds]), {}
    common = ["--checkpoint", str(files["checkpoint"]), "--audio", audio, "--style", str(files["style"]),
              "--template", str(files["template"]), "--device", "cpu"]
    outputs = {}
    for name, extra in (("mimic generate (fp32)", []), ("mimic generate --precision fast", ["--precision", "fast"])):
        outputs[name] = tmp / f"ours-{len(outputs)}-{seconds:g}.npy"
        rows[name] = timed_process("-m", "mimic.cli", "generate", *common, "--out", str(outputs[name]), *extra,
                                   repeat=repeat)
    official_out = tmp / f"official-{seconds:g}.npy"
    rows["official loop"] = timed_process("-m", "benchmarks.generate", "official", str(files["checkpoint"]), audio,
                                          str(files["style"]), str(files["template"]), str(official_out), repeat=repeat)
    rows["wav2vec2 alone"] = timed_process("-m", "benchmarks.generate", "wav2vec2", audio, repeat=repeat)
    official = np.load(official_out)
    deviations = {name: float(np.abs(np.load(path) - official).max()) for name, path in outputs.items()}
    return {"rows": rows, "deviations": deviations}


def print_whole(seconds: float, result: dict) -> dict:
    """The table of one length; returns the ratios the targets are about."""
    rows, deviations = result["rows"], result["deviations"]
    official_clock, official = rows["official loop"]
    wav2vec2_clock, wav2vec2 = rows["wav2vec2 alone"]
    print(f"\n{seconds:g} s of speech ({wav2vec2['windows']} windows), whole processes")
    print(f"{'':32} {'process s':>9}  {'inside s':>8}  {'others':>6}  official process / this")
    for name in ("mimic generate (fp32)", "mimic generate --precision fast"):
        clock = rows[name][0]
        print(f"{name:32} {clock.seconds:9.2f}  {'':8}  {clock.others:6.0%}  "
              f"x{official_clock.seconds / clock.seconds:.2f}  "
              f"(max |this - official| {1000 * deviations[name]:.4f} mm)")
    print(f"{'official loop':32} {official_clock.seconds:9.2f}  {official['generation']:8.2f}  "
          f"{official_clock.others:6.0%}  (inside: encoder {official['encoder']:.2f} s, "
          f"decoder {official['decoder']:.2f} s)")
    print(f"{'wav2vec2 alone':32} {wav2vec2_clock.seconds:9.2f}  {wav2vec2['wav2vec2']:8.2f}  "
          f"{wav2vec2_clock.others:6.0%}")
    ratios = {}
    for name, short in (("mimic generate (fp32)", "fp32"), ("mimic generate --precision fast", "fast")):
        ours = rows[name][0].seconds
        ratios[short] = {"/ wav2vec2 inside": ours / wav2vec2["wav2vec2"],
                         "/ wav2vec2 process": ours / wav2vec2_clock.seconds,
                         "official process /": official_clock.seconds / ours,
                         "official inside /": official["generation"] / ours}
    return ratios


def precision_table(files: dict, seconds: float, repeat: int) -> dict:
    """The generator in this process at each supported precision, against fp32."""
    import soundfile

    from mimic.checkpoint import load_model
    from mimic.generate import Generator
    from mimic.precision import supported_precisions

    audio = soundfile.read(files[seconds], dtype="float32")[0]
    template = np.load(files["template"])
    reference = np.load(files["style"]) - template
    results = {}
    for precision in supported_precisions(torch.device("cpu")):
        generator = Generator(load_model(files["checkpoint"]), torch.device("cpu"), precision=precision)
        code = generator.style_code(reference)
        for _ in generator.stream(audio[:RATE * 6], code):  # warm-up: one window
            pass
        clocks = []
        for _ in range(repeat):
            with Clock() as clock:
                motion = np.concatenate(list(generator.stream(audio, code)))
            clocks.append(clock)
        results[precision] = (min(clocks, key=lambda c: c.seconds), motion)
    exact = results["fp32"][1]
    size = np.linalg.norm(exact, axis=-1)
    print(f"\nprecision of the audio encoder, {seconds:g} s of speech, generator in-process (audio encoder + decoder)")
    print(f"motion (random weights): largest vertex offset {1000 * size.max():.2f} mm, "
          f"RMS {1000 * np.sqrt((size**2).mean()):.2f} mm")
    print(f"{'precision':10} {'seconds':>8}  {'speed-up':>8}  {'others':>6}  {'max deviation mm':>16}  {'RMS mm':>8}")
    table = {}
    for precision, (clock, motion) in results.items():
        error = np.linalg.norm(motion - exact, axis=-1)
        table[precision] = (results["fp32"][0].seconds / clock.seconds, 1000 * float(error.max()))
        print(f"{precision:10} {clock.seconds:8.2f}  x{table[precision][0]:7.2f}  {clock.others:6.0%}  "
              f"{table[precision][1]:16.4f}  {1000 * np.sqrt((error**2).mean()):8.4f}")
    return table


def cancel_latency(files: dict, seconds: float, tmp: Path) -> list[tuple[str, float]]:
    """Seconds from writing a cancel to reading the cancelled reply, a cancel in each stage."""
    from mimic import protocol as p

    latencies = []
    with Serve(tmp) as serve:
        serve.ask(p.LOAD, checkpoint=str(files["checkpoint"]), device="cpu")
        style = serve.ask(p.ENCODE_STYLE, vertices=str(files["style"]), neutral=str(files["template"]))["style"]
        audio = tmp / "cancel-audio.npy"
        import soundfile
        np.save(audio, soundfile.read(files[seconds], dtype="float32")[0])
        for stage, delay in ((p.ENCODING, 0.0), (p.ENCODING, 0.7), (p.ENCODING, 1.4), (p.ENCODING, 2.1),
                             (p.GENERATING, 0.0), (p.COMPRESSING, 0.0)):
            latencies.append((f"{stage} +{delay:g} s", serve.cancel_in(stage, delay, audio=str(audio), style=style)))
    print(f"\ncancel of a {seconds:g} s generate in a real `mimic serve`: seconds from the cancel to the reply")
    for name, latency in latencies:
        print(f"  {name:28} {latency:6.3f}")
    return latencies


def warm_click(files: dict, repeat: int) -> dict:
    """The button's job (benchmarks/click.py) in real Blender, cold and then warm."""
    _, click = timed_process("-m", "benchmarks.click", str(files["checkpoint"]), str(files[CLICK_SECONDS]),
                             "--repeat", str(max(repeat, 2)), repeat=1)
    print(f"\nthe button's job, {CLICK_SECONDS:g} s of speech onto a {VERTICES}-vertex head in Blender "
          f"(benchmarks/click.py): {click['summary']}")
    print(f"  cold (backend start + model load + job) {click['cold']:.2f} s; warm, click to keys: "
          + ", ".join(f"{s:.2f}" for s in click["warm"]) + " s")
    return click


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        return ROLES[sys.argv[1]](*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", default="20,60", help="lengths of speech, comma-separated (default 20,60)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help=f"runs of each timing, the fastest shown ({REPEAT})")
    args = parser.parse_args()
    lengths = [float(s) for s in args.seconds.split(",")]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} cores, "
          f"full-size network with random weights, CPU")
    with tempfile.TemporaryDirectory(prefix="mimic-bench-") as tmp:
        tmp = Path(tmp)
        with Clock() as clock:
            files = write_inputs(tmp, lengths)
        size = files["checkpoint"].stat().st_size / 1e6
        print(f"inputs and a {size:.0f} MB checkpoint written in {clock.seconds:.1f} s")
        ratios = {s: print_whole(s, whole_processes(files, s, tmp, args.repeat)) for s in lengths}
        table = precision_table(files, max(lengths), args.repeat)
        latencies = cancel_latency(files, max(lengths), tmp)
        click = warm_click(files, args.repeat)
    print("\ntargets (our whole process against ...)")
    for seconds, by_precision in ratios.items():
        for precision, r in by_precision.items():
            print(f"  {seconds:g} s, {precision}: / wav2vec2 inside {r['/ wav2vec2 inside']:.2f} (<= 1.5: "
                  f"{met(r['/ wav2vec2 inside'] <= 1.5)}), / wav2vec2 process {r['/ wav2vec2 process']:.2f}; "
                  f"official process x{r['official process /']:.2f} (>= 2: {met(r['official process /'] >= 2)}); "
                  f"official generation inside x{r['official inside /']:.2f} (> 1: {met(r['official inside /'] > 1)})")
    for precision, (speed, deviation) in table.items():
        if precision != "fp32":
            print(f"  precision {precision}: generation x{speed:.2f} (>= 1.8: {met(speed >= 1.8)}), max deviation "
                  f"{deviation:.3f} mm (<= 0.3 mm: {met(deviation <= 0.3)}; random weights)")
    worst = max(latency for _, latency in latencies)
    print(f"  cancel: slowest {worst:.3f} s (<= 0.5 s: {met(worst <= 0.5)})")
    warm = min(click["warm"])
    print(f"  warm click -> keys, {CLICK_SECONDS:g} s of speech: {warm:.2f} s (<= 1.5 s: {met(warm <= 1.5)})")


if __name__ == "__main__":
    main()
