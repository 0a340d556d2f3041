#!/usr/bin/env python3
"""Checks that pictures the examples wrote exist and decode: each PNG's chunks (CRCs, IHDR, the
inflated IDAT stream's exact size for its width, height and colour type), each SVG as XML whose
root is <svg> with drawn elements. Standard library only. Usage: check_pictures.py FILE..."""

import struct
import sys
import xml.etree.ElementTree as ET
import zlib

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def check_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG signature")
    at, header, idat = 8, None, b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        at += 12 + length
    if header is None:
        raise ValueError("no IHDR")
    width, height, depth, colour = header[:4]
    if depth != 8 or colour not in CHANNELS:
        raise ValueError(f"unexpected bit depth {depth} / colour type {colour}")
    pixels = zlib.decompress(idat)
    expected = height * (1 + width * CHANNELS[colour])
    if len(pixels) != expected:
        raise ValueError(f"{len(pixels)} bytes of scanlines, {expected} expected for {width}x{height}")
    return f"PNG {width}x{height}"


def check_svg(path):
    root = ET.parse(path).getroot()
    if not root.tag.endswith("svg"):
        raise ValueError(f"the root element is {root.tag}")
    drawn = sum(1 for e in root.iter() if e.tag.split("}")[-1] in ("rect", "text", "polyline", "circle", "path"))
    if drawn == 0:
        raise ValueError("nothing is drawn")
    return f"SVG with {drawn} elements"


def main(paths):
    if not paths:
        print("usage: check_pictures.py FILE...", file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        try:
            check = check_png if path.lower().endswith(".png") else check_svg
            print(f"{path}: {check(path)}")
        except (OSError, ValueError, ET.ParseError, zlib.error) as error:
            print(f"{path}: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
