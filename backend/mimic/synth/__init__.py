"""`mimic synth`: a talking-head dataset with ground truth for speaking style.

Real 3D talking-face datasets are licensed, and none says how a sentence would look in another
speaker's style. This package makes one in VOCASET's layout from real and synthetic speech and a
procedural face rig, so the answer to "speaker A's audio in speaker B's style" is known exactly.

- `head`: the head mesh, made in code (closed surface, lips that part, a mouth pocket, eyes, brows)
  with named vertex regions.
- `phonemes`: speech (espeak-ng voices; LibriVox clips from Debian's pocketsphinx-testdata) and
  phone timings from pocketsphinx's bundled en-us model.
- `rig`: phones + style -> vertex offsets (jaw, lip opening, closure on p/b/m, labiodental tuck,
  rounding, spreading, brows, blinks), and identities (random smooth template shapes).
- `sentences`: the synthetic voices' sentence grammar.
- `dataset`: plans speakers and sentences and writes everything below.

Layout written by `mimic synth --out DIR` (what FaceFormer-style loaders and `mimic.data` read as
VOCASET, plus the files that make it a benchmark)::

    DIR/
      wav/<subject>_<sentence>.wav            16 kHz mono 16-bit speech
      vertices_npy/<subject>_<sentence>.npy   (T, V*3) float32 absolute vertices at 60 fps
                                              (VOCASET's capture rate; loaders keep every 2nd
                                              frame for 30 fps); T = round(seconds * 60)
      templates.pkl                           pickle: {subject: (V, 3) float32 neutral face}
      splits.json                             {"train": [subjects], "val": [...], "test": [...]}
      speakers.json                           {subject: {split, voice, style, identity_seed,
                                              sentences: {sentenceNN: text id}}}; style holds the
                                              true style parameters (`rig.Style`)
      sentences.json                          {"texts": {text id: {text, heldout, source[, clip,
                                              start, end]}}, "files": {<subject>_<sentence>: text id}}
      regions.json                            {region: [vertex indices]}: lips, upper_face, eyes,
                                              brows, jaw, mouth_pocket, and lip_edge_upper /
                                              lip_edge_lower (paired vertices that meet on p/b/m)
      phones.json                             {"<subject>_<sentence>" or "transfer/wav/<A>_<text id>":
                                              [[phone, start s, end s], ...]}: what drove the rig
      head.obj                                the base head and its triangles (every template has
                                              this topology)
      synth.json                              configuration, counts, format version
      transfer/
        wav/<A>_<text id>.wav                 speaker A reading a held-out text
        vertices_npy/<A>_<text id>__as__<B>.npy
                                              (T, V*3) float32 at 60 fps: the rig driven by A's
                                              phones (and loudness) in B's style, on A's template
        manifest.json                         [{text_id, text, audio_speaker, audio_split,
                                              style_speaker, style_split, template, wav, vertices,
                                              same_as, style_references}]: style_references are
                                              B's files in vertices_npy/ (never of this text);
                                              same_as names A's own main-layout file when B is A
                                              and A read the text there (the two are equal)

Subjects are `SynthTalk_NN`. Sentence numbers are per subject, as in VOCASET, and follow the
protocol `mimic.data` applies (FaceFormer's): train subjects' sentences 01-40 are trained on, val
and test subjects' sentences 21-40 are evaluated, so train subjects' readings are numbered from 01
and val/test subjects' from 21. Texts have ids shared by all subjects (`sentences.json`).

Held-out design: the last texts (`"heldout": true`) are never read by train or val subjects.
Test subjects (never trained on) read held-out texts for half their sentences and seen texts for
the rest, so results can be reported on held-out sentences, on held-out speakers, and on both.
`transfer/` takes each held-out text in the voice of a train and of a test speaker, and animates
it in that speaker's own style, a train speaker's style and a test speaker's style.

Identity and style are independent: a subject's template is the base head under a random smooth
deformation (`identity_seed`); the rig's offsets depend only on the phones, the audio's loudness
(which syllables raise the brows) and the style, with blinks seeded by the style's speaker and
the text (`dataset.blink_seed`). Everything is deterministic for a seed.
"""
