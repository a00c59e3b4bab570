#!/usr/bin/env python3
"""PyTorch reference for benches/benches/clip.rs: ViT-B/32 image and caption embedding
throughput on the CPU with transformers' CLIPModel (random weights, or a model.safetensors
given as CLIP_WEIGHTS), at the same thread count as the Rust run.

  python3 benches/clip_torch.py --threads 2 --batches 1,32,256

Prints one line per case: images/s or captions/s (median of --repeats timed calls after one
warm-up). Tested with torch 2.15.0 and transformers 5.23.0 (see stages/tests/clip/make_fixtures.py).
"""
import argparse
import os
import statistics
import time

import torch
from transformers import CLIPConfig, CLIPModel


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    if os.environ.get("CLIP_WEIGHTS"):
        from safetensors.torch import load_file
        model.load_state_dict(load_file(os.environ["CLIP_WEIGHTS"]), strict=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            repeats = max(1, args.repeats if batch <= 32 else args.repeats // 2)
            pixels = torch.randn(batch, 3, 224, 224)
            t = timed(lambda: model.get_image_features(pixel_values=pixels), repeats)
            print(f"images   batch {batch:4d}: {batch / t:8.2f}/s ({t * 1000:.1f} ms per call)")
            ids = torch.randint(1, 49406, (batch, 77))
            ids[:, 0], ids[:, 20], ids[:, 21:] = 49406, 49407, 0
            t = timed(lambda: model.get_text_features(input_ids=ids), repeats)
            print(f"captions batch {batch:4d}: {batch / t:8.2f}/s ({t * 1000:.1f} ms per call)")


if __name__ == "__main__":
    main()
