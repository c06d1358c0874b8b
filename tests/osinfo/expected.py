#!/usr/bin/env python3
"""Independent reference for `cove detect-os`: reads osinfo-db's XML with ElementTree and
matches ISO volume IDs with Python's `re`, following libosinfo's rule (each pattern a regular
expression searched anywhere in its field, case-sensitive; a medium matches when every pattern
it gives matches; among matching OSes the latest release date wins, then file order).

Usage: expected.py OSINFO_OS_DIR ISO...  -> one line per ISO: short-id or "unknown".
The ISO's fields are read from its primary volume descriptor here, independently of Cove."""
import os
import re
import sys
import xml.etree.ElementTree as ET


def load(root):
    files = []
    for dirpath, _, names in os.walk(root):
        files += [os.path.join(dirpath, n) for n in names if n.endswith(".xml")]
    records = []
    for path in sorted(files):
        try:
            os_el = ET.parse(path).getroot().find("os")
        except ET.ParseError:
            continue
        if os_el is None or os_el.findtext("short-id") is None:
            continue
        media = []
        for medium in os_el.findall("media"):
            iso = medium.find("iso")
            if iso is None:
                continue
            fields = {}
            for tag in ("volume-id", "system-id", "publisher-id", "application-id"):
                text = iso.findtext(tag)
                if text is not None:
                    try:
                        fields[tag] = re.compile(text.strip())
                    except re.error:
                        pass
            if fields:
                media.append(fields)
        records.append((os_el.findtext("short-id").strip(), os_el.findtext("release-date") or "", media))
    return records


def iso_fields(path):
    with open(path, "rb") as f:
        f.seek(16 * 2048)
        pvd = f.read(2048)
    text = lambda a, b: pvd[a:b].decode("latin-1").rstrip(" \0")
    return {
        "system-id": text(8, 40),
        "volume-id": text(40, 72),
        "publisher-id": text(318, 446),
        "application-id": text(574, 702),
    }


def identify(records, iso):
    best = None
    for short_id, date, media in records:
        for fields in media:
            if all(iso[tag] and pattern.search(iso[tag]) for tag, pattern in fields.items()):
                if best is None or date > best[1]:
                    best = (short_id, date)
                break
    return best[0] if best else "unknown"


def main():
    records = load(sys.argv[1])
    for path in sys.argv[2:]:
        print(identify(records, iso_fields(path)))


if __name__ == "__main__":
    main()
