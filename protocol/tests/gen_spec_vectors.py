#!/usr/bin/env python3
"""Regenerates the test-vector section of protocol/SPEC.md (between the `generated vectors`
markers) from protocol/tests/vectors.json, decoding and annotating the bytes independently of
the Rust code. Run after `TFX_REGENERATE_VECTORS=1 cargo test -p tfx-protocol --test vectors`;
the `spec_quotes_every_vector` test fails until SPEC.md quotes every vector. Standard library
only."""
import json, hashlib, struct, sys
import os
HERE = os.path.dirname(os.path.abspath(__file__))
V = json.load(open(os.path.join(HERE, 'vectors.json')))
H = bytes.fromhex
def sha(b): return hashlib.sha256(b).digest()

def dec(b, i=0):
    ib = b[i]; mt, ai = ib >> 5, ib & 31; i += 1
    if ai < 24: arg = ai
    else:
        n = {24:1,25:2,26:4,27:8}[ai]; arg = int.from_bytes(b[i:i+n],'big'); i += n
    if mt == 0: return arg, i
    if mt == 1: return -1-arg, i
    if mt == 2: return b[i:i+arg], i+arg
    if mt == 3: return b[i:i+arg].decode(), i+arg
    if mt == 4:
        out=[]
        for _ in range(arg):
            v,i = dec(b,i); out.append(v)
        return out, i
    if mt == 5:
        out={}
        for _ in range(arg):
            k,i=dec(b,i); v,i=dec(b,i); out[k]=v
        return out, i
    if mt == 6:
        v,i=dec(b,i); return ('tag',arg,v), i
    if mt == 7: return {20:False,21:True,22:None}[ai], i
def D(b):
    v,i=dec(b); assert i==len(b); return v

def head_len(b, i):
    ai = b[i] & 31
    return 1 + ({24:1,25:2,26:4,27:8}.get(ai, 0))

out = []
P = out.append
def block(lines):
    P("```"); [P(l) for l in lines]; P("```"); P("")

def fmt_value(v):
    return json.dumps(v, ensure_ascii=False)

KINDNAMES = ['credit','ip-valuation','monitoring','risk-warning']

# 11.2 keys
P("### 11.2 Keys")
P("")
P("Signing key seed (32 bytes; the Ed25519 private key is derived from it as in RFC 8032 §5.1.5):")
P("")
block([V['signing_key_seed']])
P("Public key, raw (32 bytes):")
P("")
block([V['public_key']])
P("Public key as DER SubjectPublicKeyInfo (44 bytes; the 12-byte prefix `302a300506032b6570032100`, then the raw key):")
P("")
block([V['public_key_spki_der']])
P("Key id, `SHA-256(raw public key)[0..16]`:")
P("")
block([V['kid']])
P(f"Pseudonym secret (32 bytes; purpose `{V['pseudonym_purpose']}`, epoch {V['pseudonym_epoch']}):")
P("")
block([V['pseudonym_secret']])

def record_values(r, annotate=False):
    env = H(r['envelope_hex']); hdr = H(r['header_hex']); rf = H(r['record_file_hex'])
    P(f"Record id, `SHA-256(envelope)`:")
    P("")
    block([r['record_id']])
    P("Leaf hash, `SHA-256(0x00 ‖ envelope)` (§8.1):")
    P("")
    block([r['leaf_hash']])
    if annotate:
        P("@@HEADER_TABLE@@")
    P(f"Header, the signed payload ({len(hdr)} bytes):")
    P("")
    block([r['header_hex']])
    if annotate:
        P("@@ENVELOPE_TABLE@@")
    P(f"Envelope ({len(env)} bytes):")
    P("")
    block([r['envelope_hex']])
    nd = len(r['disclosures'])
    P(f"Record file ({len(rf)} bytes): `84 6a \"tfx-record\" 01`, the envelope as `59 {len(env):04x} …`, then an array of {nd} disclosure byte strings (`{'%02x' % (0x80+nd) if nd < 24 else '98 %02x' % nd}` …):")
    P("")
    block([r['record_file_hex']])
    P(f"Disclosures ({nd}, in the record file's order), each with its value, bytes and SHA-256 digest:")
    P("")
    lines = []
    for j, d in enumerate(r['disclosures']):
        salt, value, name = D(H(d['hex']))
        assert name == d['field']
        lines.append(f"# {j}: {name} = {fmt_value(value)}")
        lines.append(f"disclosure {d['hex']}")
        lines.append(f"sha256     {d['sha256']}")
    block(lines)

counts = {'credit':24,'ip-valuation':20,'monitoring':16,'risk-warning':8}
titles = {'credit':'credit','ip-valuation':'ip-valuation','monitoring':'monitoring','risk-warning':'risk-warning'}

r0 = V['records'][0]
P(f"### 11.3 Record 0: `credit` (`{r0['example']}`, seq 0), annotated")
P("")
record_values(r0, annotate=True)

# 11.4 worked example
P("### 11.4 Worked example: one disclosure byte by byte")
P("")
dx = next(d for d in r0['disclosures'] if d['field'] == 'industry')
b = H(dx['hex'])
salt, value, name = D(b)
P(f"The credit record's `industry` disclosure is {len(b)} bytes:")
P("")
block([dx['hex']])
rows = [
    ("0", b[0:1].hex(), "array, 3 elements (major type 4, argument 3)"),
    ("1", b[1:2].hex(), "byte string, 16 bytes (major type 2, argument 16): the salt follows"),
    ("2–17", b[2:18].hex(), "salt: chunk 3 of this record's random draw, because `industry` is field 3 (from 0) of the field list (§5.2); with the vector entropy of §11.1 that is bytes 16–31 of `SHA-256(S ‖ uint64_be(1))`"),
]
i = 18
assert b[i] == 0x60 + len(value)
rows.append((str(i), b[i:i+1].hex(), f"text string, {len(value)} byte (major type 3, argument {len(value)})"))
rows.append((str(i+1), b[i+1:i+1+len(value)].hex(), f"value: \"{value}\" (GB/T 4754 section D: electricity, heat, gas and water)"))
i += 1 + len(value)
rows.append((str(i), b[i:i+1].hex(), f"text string, {len(name)} bytes"))
rows.append((f"{i+1}–{i+len(name)}", b[i+1:i+1+len(name)].hex(), f"field name: \"{name}\""))
assert i + 1 + len(name) == len(b)
P("| Offset | Bytes | Meaning |")
P("|---|---|---|")
for o, h, m in rows:
    P(f"| {o} | `{h}` | {m} |")
P("")
hdr = D(H(r0['header_hex']))
pos = hdr[7].index(H(dx['sha256']))
P(f"Its digest, SHA-256 over all {len(b)} bytes, is")
P("")
block([dx['sha256']])
P(f"which is entry {pos} (from 0) of the sorted digest list in the header above. Changing any byte of the disclosure — the salt, the value or the name — changes the digest, which is then no longer in the signed header (`digest is not in the signed header`).")
P("")
# fix salt row text: compute which chunk
ds = r0['disclosures']
idx = [d['field'] for d in ds].index('industry')
rows_fixed = None
P(f"The same shape carries every type: `overdue_days` holds the unsigned integer `{D(H(ds[12]['hex']))[1]}` (`18 23`), `risk_compensation_pool` holds `true` (`f5`), and `subject_pseudonym` holds the text `{D(H(ds[14]['hex']))[1]}`, which is `ps1.2026.` followed by the first 16 bytes of HMAC-SHA256 under the key derived from the secret of §11.2, over the USCC `{D(H(ds[0]['hex']))[1]}` (§4.6).")
P("")

P("### 11.5 Records 1–3")
P("")
for n, r in enumerate(V['records'][1:], start=1):
    kind = D(H(r['header_hex']))[3]
    hd = D(H(r['header_hex']))
    P(f"#### Record {n}: `{kind}` (`{r['example']}`, seq {r['seq']})")
    P("")
    P(f"Header: `{{1: \"{hd[1]}\", 2: {hd[2]}, 3: \"{hd[3]}\", 4: {hd[4]}, 5: {hd[5]}, 7: [{len(hd[7])} digests]}}`; {len(r['disclosures'])} disclosures and {len(hd[7]) - len(r['disclosures'])} decoys.")
    P("")
    record_values(r)

# merkle
M = V['merkle']
leaves = [H(r['leaf_hash']) for r in V['records']]
def node(a,b): return sha(b'\x01'+a+b)
n01 = node(leaves[0], leaves[1]); n23 = node(leaves[2], leaves[3])
assert node(n01, n23).hex() == M['root']
P("### 11.6 Merkle log of `bank-a`")
P("")
P("The four envelopes above are leaves 0–3. Their leaf hashes are quoted with each record; the inner nodes are")
P("")
block([f"(1, 0) = node(leaf 0, leaf 1) = {n01.hex()}",
       f"(1, 1) = node(leaf 2, leaf 3) = {n23.hex()}"])
P(f"Root of the tree of size {M['size']}, `node((1, 0), (1, 1))`:")
P("")
block([M['root']])
P("Root of the tree of size 3, `node((1, 0), leaf 2)`:")
P("")
block([M['root_size_3']])
P("Inclusion proof for seq 2 in the tree of size 4, `PATH(2, D[4])` = [leaf 3, node (1, 0)]:")
P("")
block(M['inclusion_proof_seq_2'])
P("Verification: `r = node(leaf 2, proof[0])` (index 2 is even, so the proof hash goes on the right), then `r = node(proof[1], r)` (index 1 is odd), which equals the root.")
P("")
P("Consistency proof from size 3 to size 4, `PROOF(3, D[4])` = [leaf 2, leaf 3, node (1, 0)]:")
P("")
block(M['consistency_proof_3_to_4'])
P("Verification (RFC 9162 §2.1.4.2): 3 is not a power of two, so the path starts with `proof[0]` = leaf 2; `node(proof[2], leaf 2)` gives the size-3 root above, and `node(proof[2], node(leaf 2, proof[1]))` gives the size-4 root.")
P("")

# checkpoint
C = V['checkpoint']
cb = H(C['signed_hex'])
t = D(cb); prot, unp, payload, sig = t[2]
cp = D(payload)
P("### 11.7 Checkpoint")
P("")
P(f"`bank-a` signs its log at size {C['size']}, time_ms {C['time_ms']}, with the same key. Payload `{{1: \"{cp[1]}\", 2: {cp[2]}, 3: h'{cp[3].hex()[:8]}…' (the root of §11.6), 4: {cp[4]}}}` ({len(payload)} bytes); protected header `{{1: -8, 3: \"application/tfx-checkpoint+cbor\", 4: h'{prot[-16:].hex()}'}}` ({len(prot)} bytes). The signed checkpoint ({len(cb)} bytes):")
P("")
block([C['signed_hex']])
P("Layout: `d2 84` (tag 18, array of 4), `58 37` + protected header, `a0` (empty unprotected), `58 38` + payload `a4 01 66 62616e6b2d61 02 04 03 58 20 <root> 04 1b 000001a0c4506c00`, `58 40` + signature.")
P("")

text = "\n".join(out)

# header table
hb = H(r0['header_hex']); hdr = D(hb)
rows = []
def add(o, h, m): rows.append((o, h, m))
add(0, 'a6', 'map, 6 entries (no key 6: this record supersedes nothing)')
add(1, '01', 'key 1, origin')
add(2, '66 ' + b'bank-a'.hex(), 'text(6) "bank-a"')
add(9, '02', 'key 2, seq')
add(10, '00', 'uint 0')
add(11, '03', 'key 3, kind')
add(12, '66 ' + b'credit'.hex(), 'text(6) "credit"')
add(19, '04', 'key 4, schema')
add(20, '01', 'uint 1')
add(21, '05', 'key 5, issued_at_ms')
add(22, '1b 000001a0c4506c00', 'uint 1790000000000 (over 2^32, so the 8-byte form)')
add(31, '07', 'key 7, digests')
add(32, '98 18', 'array, 24 elements (argument 24 needs the 1-byte form)')
add(34, '58 20 …', '24 × (bstr(32) head `58 20` + digest), 34 bytes each, listed below')
assert hb[:34].hex() == 'a6016662616e6b2d61020003666372656469740401051b000001a0c4506c00079818', hb[:34].hex()
assert len(hb) == 34 + 24*34
tl = ["The header decodes as follows (offsets in bytes from the start of the payload):", "",
      "| Offset | Bytes | Meaning |", "|---|---|---|"]
for o, h, m in rows:
    tl.append(f"| {o} | `{h}` | {m} |")
tl.append("")
byhash = {d['sha256']: d['field'] for d in r0['disclosures']}
tl.append(f"The 24 digests in header order (ascending bytewise). {len(r0['disclosures'])} are the SHA-256 of a disclosure listed below; the other {24-len(r0['disclosures'])} are decoys, `SHA-256` of 16 random bytes, which nothing distinguishes from the rest:")
tl.append("")
tl.append("```")
for j, dg in enumerate(hdr[7]):
    tl.append(f"{j:2d} {dg.hex()}  {byhash.get(dg.hex(), '(decoy)')}")
tl.append("```")
tl.append("")
text = text.replace("@@HEADER_TABLE@@\n", "\n".join(tl) + "\n")

# envelope table
eb = H(r0['envelope_hex']); t = D(eb); prot, unp, payload, sig = t[2]
assert eb[:4].hex() == 'd2845833'
o_prot = 4; o_unp = o_prot + len(prot); o_pay = o_unp + 1
assert eb[o_unp] == 0xa0 and eb[o_pay:o_pay+3].hex() == '590352'
o_sig = o_pay + 3 + len(payload)
assert eb[o_sig:o_sig+2].hex() == '5840' and o_sig + 2 + 64 == len(eb)
ct = b'application/tfx-record+cbor'
el = ["The envelope wraps it (offsets from the start of the envelope):", "",
      "| Offset | Bytes | Meaning |", "|---|---|---|",
      "| 0 | `d2` | tag 18 (COSE_Sign1) |",
      "| 1 | `84` | array, 4 elements |",
      f"| 2 | `58 33` | bstr, {len(prot)} bytes: the protected header |",
      f"| 4 | `a3` | map, 3 entries |",
      f"| 5 | `01 27` | key 1 (alg): −8 (`27` is major type 1, argument 7: −1 − 7), EdDSA |",
      f"| 7 | `03 78 1b` … | key 3 (content type): text(27) \"application/tfx-record+cbor\" |",
      f"| 37 | `04 50` … | key 4 (kid): bstr(16) `{prot[-16:].hex()}` |",
      f"| {o_unp} | `a0` | unprotected header: empty map |",
      f"| {o_pay} | `59 0352` | bstr, {len(payload)} bytes: the header above |",
      f"| {o_sig} | `58 40` | bstr, 64 bytes: the Ed25519 signature |",
      "",
      f"The bytes signed are the Sig_structure (§6.3): `84 6a 5369676e617475726531 58 33 <protected> 40 59 0352 <header>`, {1+11+2+len(prot)+1+3+len(payload)} bytes.",
      ""]
assert prot[:7].hex() == 'a3012703781b' + ''[:0] or True
assert prot.hex() == 'a30127' + '03781b' + ct.hex() + '0450' + V['kid']
text = text.replace("@@ENVELOPE_TABLE@@\n", "\n".join(el) + "\n")

SPEC = os.path.join(HERE, '..', 'SPEC.md')
BEGIN = '<!-- generated vectors: begin (python3 protocol/tests/gen_spec_vectors.py) -->\n'
END = '<!-- generated vectors: end -->\n'
spec = open(SPEC).read()
head, rest = spec.split(BEGIN)
_, tail = rest.split(END)
open(SPEC, 'w').write(head + BEGIN + text.rstrip() + "\n" + END + tail)
print("rewrote the generated vectors section of", os.path.normpath(SPEC))
