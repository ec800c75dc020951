r"""Convert model weights between formats.

  # HF directory or GGUF (or a registered name) -> our checkpoint directory
  python experiments/convert.py --src=smollm2-135m-instruct --out=/tmp/smollm2
  # ... and back to a Hugging Face directory
  python experiments/convert.py --src=/tmp/smollm2 --out=/tmp/smollm2-hf --to=hf

Our checkpoint directory holds Orbax params, armap_model.json (the config) and
the tokenizer files; `armap_jax.models.load_pretrained(dir)` reads it.
"""

from absl import flags, logging

from armap_jax.models import hf
from armap_jax.runtime import launch

_SRC = flags.DEFINE_string(
    "src", None, "Registered model name, .gguf file, HF directory or checkpoint "
    "directory.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_TO = flags.DEFINE_enum("to", "checkpoint", list(hf.FORMATS),
                        "Output format.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16",
                                                "float16"],
                           "Parameter dtype of the output.")


def main(argv):
  del argv
  hf.convert(_SRC.value, _OUT.value, to=_TO.value, dtype=_DTYPE.value)
  logging.info("wrote %s (%s)", _OUT.value, _TO.value)


if __name__ == "__main__":
  launch.run_main(main)
