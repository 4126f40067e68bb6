#!/bin/sh
# Regenerates the emulator's sample clips (see docs/emulator.md). Needs ffmpeg with libx264.
# Two seconds, 12 fps, no audio, H.264 constrained baseline, yuv420p, moov atom first
# (faststart) so browsers can start playing before the whole file has arrived.
set -eu
cd "$(dirname "$0")"
enc() {  # enc OUTPUT LAVFI_SOURCE
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$2" -t 2 \
        -c:v libx264 -profile:v baseline -level 3.0 -pix_fmt yuv420p -preset veryslow -crf 30 \
        -g 24 -an -map_metadata -1 -fflags +bitexact -flags:v +bitexact \
        -movflags +faststart "$1"
}
enc landscape-testsrc.mp4 "testsrc=size=160x90:rate=12"
enc landscape-smptebars.mp4 "smptebars=size=160x90:rate=12"
enc landscape-mandelbrot.mp4 "mandelbrot=size=160x90:rate=12"
enc portrait-testsrc2.mp4 "testsrc2=size=90x160:rate=12"
enc square-gradients.mp4 "gradients=size=96x96:rate=12:speed=0.05:c0=#ff7a18:c1=#3a1c71:x0=0:y0=0:x1=95:y1=95"
