"""List (and optionally prune) the CUDA fat binaries embedded in an ELF shared library.

A fatbin blob: 16-byte header (magic 0xBA55ED50, u16 version, u16 header size, u64 size of the
entries), then entries: u16 kind (1 PTX, 2 ELF/SASS), u16 ?, u32 entry-header size, u64 payload
size, ..., u32 arch at offset 28, u64 flags at offset 40. --prune ARCH rewrites each blob in
place keeping only the entries a device of compute capability ARCH can use (SASS of exactly ARCH,
PTX of arch <= ARCH), moving kept entries forward and zero-filling the freed tail: blob start
addresses (referenced from .nvFatBinSegment) do not move. A blob with no such entry keeps its smallest
entry (none is usable there either way), so that no fat binary is left empty.
"""
import struct, sys
from collections import Counter

MAGIC = 0xBA55ED50

def section(data, name):
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 0x3A)
    def sh(i):
        return struct.unpack_from('<IIQQQQIIQQ', data, shoff + i * shentsize)
    stroff = sh(shstrndx)[4]
    for i in range(shnum):
        s = sh(i)
        n = data[stroff + s[0]: data.index(b'\0', stroff + s[0])].decode()
        if n == name:
            return s[4], s[5]
    return None

def blobs(data, off, size):
    pos, end = off, off + size
    while pos + 16 <= end:
        magic, ver, hsz, fsz = struct.unpack_from('<IHHQ', data, pos)
        if magic != MAGIC:
            pos += 8  # blobs are 8-aligned; zero padding between them
            continue
        entries, e = [], pos + hsz
        while e < pos + hsz + fsz:
            kind, _, ehsz, psz = struct.unpack_from('<HHIQ', data, e)
            arch, = struct.unpack_from('<I', data, e + 28)
            flags, = struct.unpack_from('<Q', data, e + 40)
            entries.append((e, kind, ehsz, psz, arch, flags))
            e += ehsz + psz
        yield pos, hsz, fsz, entries
        pos = pos + hsz + fsz

def main():
    path, prune = sys.argv[1], (int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == '--prune' else None)
    data = bytearray(open(path, 'rb').read())
    off, size = section(data, '.nv_fatbin')
    by = Counter(); nbytes = Counter(); nb = 0; kept_total = 0
    for pos, hsz, fsz, entries in list(blobs(data, off, size)):
        nb += 1
        for (e, kind, ehsz, psz, arch, flags) in entries:
            key = ('PTX' if kind == 1 else 'SASS' if kind == 2 else f'kind{kind}', arch)
            by[key] += 1; nbytes[key] += ehsz + psz
        if prune is not None:
            keep = [x for x in entries if (x[1] == 2 and x[4] == prune) or (x[1] == 1 and x[4] <= prune)]
            if not keep:  # nothing this GPU can load (Blackwell-only kernels): keep the smallest
                keep = [min(entries, key=lambda x: x[2] + x[3])]  # entry, so that no fat binary is empty
            out = b''.join(bytes(data[x[0]: x[0] + x[2] + x[3]]) for x in keep)
            new_fsz = len(out)
            data[pos + hsz: pos + hsz + fsz] = out + b'\0' * (fsz - new_fsz)
            struct.pack_into('<Q', data, pos + 8, new_fsz)
            kept_total += new_fsz
    print(f'{path}: .nv_fatbin {size} bytes, {nb} blobs')
    for k in sorted(nbytes):
        print(f'  {k[0]:5s} sm_{k[1]:<4d} {by[k]:5d} entries {nbytes[k]:12d} bytes')
    if prune is not None:
        open(path, 'wb').write(data)
        print(f'  pruned for sm_{prune}: {kept_total} bytes of entries kept')

main()
