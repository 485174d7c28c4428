#!/usr/bin/env python3
"""Print the lib folders of the installed nvidia-* Python packages
(nvidia-cuda-nvrtc, nvidia-cublas, nvidia-cudnn-cu13, nvidia-nccl-cu13, ...,
as PyTorch installs them), joined with ':' for LD_LIBRARY_PATH.

  --require FILE   fail (exit 1) unless one of the folders holds FILE
                   (e.g. libnvrtc.so.13); may be repeated.

Used by .ci/run (NVRTC for the kernel compile check) and scripts/gpu-check.sh.
"""
import os
import sys


def lib_dirs():
    try:
        import nvidia  # a namespace package spread over site-packages
    except ImportError:
        return []
    dirs = []
    for root in list(nvidia.__path__):
        for cur, subdirs, files in os.walk(root):
            subdirs.sort()
            if os.path.basename(cur) == "lib" and any(".so" in f for f in files):
                if cur not in dirs:
                    dirs.append(cur)
    return dirs


def main(argv):
    required = []
    it = iter(argv)
    for a in it:
        if a == "--require":
            required.append(next(it, ""))
        else:
            print(f"usage: {sys.argv[0]} [--require FILE]...", file=sys.stderr)
            return 2
    dirs = lib_dirs()
    for name in required:
        if not any(os.path.exists(os.path.join(d, name)) for d in dirs):
            print(
                f"nvidia-lib-dirs: no nvidia-* Python package folder holds {name} "
                f"(searched: {dirs or 'no nvidia packages installed'})",
                file=sys.stderr,
            )
            return 1
    print(":".join(dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
