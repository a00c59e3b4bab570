#!/usr/bin/env python3
"""Reference fixtures for the Rust CLIP implementation (cascade_stages::clip).

Versions used for the committed fixtures (also written to fixtures/versions.json):
  Python 3.11.7, torch 2.15.0 (CPU), transformers 5.23.0, open_clip_torch 3.3.0,
  torchvision 0.29.2, ftfy 6.3.1, Pillow 13.0.0, safetensors 0.8.0, numpy 2.4.6.

Usage:
  make_fixtures.py tiny OUT_DIR   # the committed fixtures (stages/tests/clip/fixtures)
  make_fixtures.py full OUT_DIR   # full-size ViT-B/32 with random weights (~600 MB, not committed)

What is written:
  model/config.json, model/model.safetensors  HF CLIPModel (random, seeded), Hugging Face names
  images/*.png|jpg                           small images of odd sizes and modes
  reference.safetensors                      pixels_u8 [N,S,S,3] after OpenAI's resize + crop,
                                              image_embeds (from those pixels, normalised in f32),
                                              text_ids [M,77], text_embeds (projected, not
                                              normalised), similarity [min(N,M)] cosine(image i, caption i)
  tokens.json                                captions with OpenAI-tokenizer ids (open_clip's
                                              SimpleTokenizer = OpenAI's clip.tokenize) and, for
                                              information, transformers' CLIPTokenizer ids

References: preprocessing is OpenAI's `clip._transform` (torchvision Resize(BICUBIC) on the PIL
image, CenterCrop, RGB, ToTensor, Normalize), i.e. open_clip's eval transform for OpenAI
models; embeddings are transformers' CLIPModel.get_image_features / get_text_features in f32
on CPU, fed the very pixel tensor and ids stored here.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms
from transformers import CLIPConfig, CLIPModel

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

CAPTIONS = [
    "a photo of a cat",
    "A Dog running on the BEACH!!!",
    "Crème brûlée — à la française, naïve café",
    "東京タワーの夜景 🗼✨ 2024年",
    "emoji only 😀😃😄😁🐶🐱‍👤 👩🏽‍💻",
    "Fish &amp; Chips &lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39; &quot;x&quot; &copy; 2020 &amp;amp;",
    "Tom's dog isn't here, they're gone, we've won, I'm ok, you'll see, he'd go",
    "  lots\tof\n\nwhitespace   and\u00a0nbsp\u3000ideographic  ",
    "“Curly quotes” and ‘single’ ﬁne ﬂower ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "numbers 1234567890 3.14159 1,000,000 and v2.0-beta_rc1",
    "Привет мир, Ελληνικά, עברית, العربية, हिन्दी, 한국어",
    "<|endoftext|> inside text <|startoftext|> and <start_of_text>",
    "word " * 100,
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "",
    "http://example.com/path?query=1&amp;x=2#frag image.jpg",
    "İstanbul ǅemal ß STRASSE ΣΊΣΥΦΟΣ",
]


def versions():
    import ftfy, open_clip, PIL, safetensors, torchvision, transformers
    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
        "open_clip_torch": open_clip.__version__, "torchvision": torchvision.__version__, "ftfy": ftfy.__version__,
        "pillow": PIL.__version__, "safetensors": safetensors.__version__, "numpy": np.__version__,
    }


def make_images(out, rng):
    """Deterministic test images: gradients plus noise, odd sizes, several modes."""
    os.makedirs(out, exist_ok=True)
    specs = [("wide_40x30.png", 40, 30, "RGB"), ("photo_300x200.jpg", 300, 200, "RGB"),
             ("tall_64x100.png", 64, 100, "RGB"), ("gray_50x50.png", 50, 50, "L"),
             ("odd_97x61.jpg", 97, 61, "RGB")]
    names = []
    for name, w, h, mode in specs:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([255 * x / w, 255 * y / h, 128 + 100 * np.sin((x + y) / 7.0)], axis=-1)
        arr = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
        if mode == "L":
            img = img.convert("L")
        path = os.path.join(out, name)
        img.save(path, quality=90) if name.endswith(".jpg") else img.save(path)
        names.append(name)
    return names


def openai_crop(path, size):
    """OpenAI's transform up to the crop: uint8 HWC RGB."""
    img = Image.open(path)
    img = transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC)(img)
    img = transforms.CenterCrop(size)(img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def normalise(u8):
    t = torch.from_numpy(u8.copy()).permute(2, 0, 1).float().div(255)
    return transforms.Normalize(MEAN, STD)(t)


def features(output):
    """transformers 5 returns an output object where 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def hf_ids(out, captions):
    """transformers' CLIPTokenizer ids (built from open_clip's vocabulary: no hub access), which
    skip the html.unescape step; kept to document where the two references differ."""
    import open_clip
    import tempfile
    from transformers import CLIPTokenizer
    simple = open_clip.tokenizer.SimpleTokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w") as f:
            json.dump(simple.encoder, f)
        ranks = sorted(simple.bpe_ranks.items(), key=lambda kv: kv[1])
        with open(os.path.join(tmp, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in ranks))
        tok = CLIPTokenizer(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"), bos_token="<start_of_text>",
                            eos_token="<end_of_text>", pad_token="<end_of_text>", unk_token="<end_of_text>")
        return [tok(c, truncation=True, max_length=77)["input_ids"] for c in captions]


def tiny_config():
    text = dict(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")
    vision = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
                  image_size=64, patch_size=16, hidden_act="quick_gelu")
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)


def build_model(kind, out):
    torch.manual_seed(0)
    config = tiny_config() if kind == "tiny" else CLIPConfig()  # defaults = openai/clip-vit-base-patch32
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # randomise norms and biases too, so every mapping is tested
            p.add_(torch.randn_like(p) * 0.05)
        model.logit_scale.fill_(2.6592)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if kind == "tiny":  # f16 keeps the committed file small and exercises widening on load
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    os.makedirs(os.path.join(out, "model"), exist_ok=True)
    save_file(state, os.path.join(out, "model", "model.safetensors"))
    config_dict = config.to_dict()
    with open(os.path.join(out, "model", "config.json"), "w") as f:
        json.dump({k: config_dict[k] for k in ("text_config", "vision_config", "projection_dim")}, f, indent=1, default=str)
    return model, config


def main():
    kind, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    model, config = build_model(kind, out)
    size = config.vision_config.image_size
    names = make_images(os.path.join(out, "images"), rng)
    u8 = np.stack([openai_crop(os.path.join(out, "images", n), size) for n in names])
    pixels = torch.stack([normalise(p) for p in u8])

    import open_clip
    captions = CAPTIONS if kind == "tiny" else CAPTIONS[:5]
    ids = open_clip.tokenize(captions)  # OpenAI's SimpleTokenizer, truncate to 77
    with torch.no_grad():
        image_embeds = features(model.get_image_features(pixel_values=pixels))
        eot = ids.argmax(dim=-1)  # <|endoftext|> is the highest id
        hidden = model.text_model(input_ids=ids).last_hidden_state
        text_embeds = model.text_projection(hidden[torch.arange(len(captions)), eot])
        assert torch.allclose(text_embeds, features(model.get_text_features(input_ids=ids)), atol=1e-6)
    pairs = min(len(names), len(captions))
    similarity = torch.nn.functional.cosine_similarity(image_embeds[:pairs], text_embeds[:pairs])
    save_file({
        "pixels_u8": torch.from_numpy(u8), "image_embeds": image_embeds.contiguous(),
        "text_ids": ids.to(torch.int64), "text_embeds": text_embeds.contiguous(), "similarity": similarity.contiguous(),
    }, os.path.join(out, "reference.safetensors"))

    tokens = {"reference": "open_clip.tokenize (OpenAI SimpleTokenizer: ftfy.fix_text, html.unescape x2, whitespace, lower)",
              "images": names, "captions": captions, "ids": [[int(t) for t in row if t] for row in ids],
              "hf_ids_for_information": hf_ids(out, captions)}
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump(tokens, f, ensure_ascii=False, indent=0)
    with open(os.path.join(out, "versions.json"), "w") as f:
        json.dump(versions(), f, indent=1)
    print(json.dumps(versions()))


if __name__ == "__main__":
    main()
