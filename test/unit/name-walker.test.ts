/** The one walk over wire-format names: limits, compression pointers under each rule, truncation, visits. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HEADER_SIZE } from '../../src/dns/constants.js';
import { NameError, nameError, Pointers, walkName, type PointerRule } from '../../src/dns/name-walker.js';

const ALL_RULES: readonly PointerRule[] = [Pointers.REFUSE, Pointers.STOP, Pointers.FOLLOW];

/** A name in place from its label lengths (labels of 'a's), ended by the root label. */
function name(...lengths: number[]): Buffer {
  return Buffer.concat([...lengths.map((n) => Buffer.concat([Buffer.from([n]), Buffer.alloc(n, 0x61)])), Buffer.from([0])]);
}

/** `parts` after a 12-byte header, so that pointers may point at them. */
function message(...parts: Buffer[]): Buffer {
  return Buffer.concat([Buffer.alloc(HEADER_SIZE), ...parts]);
}

const pointer = (to: number): Buffer => Buffer.from([0xc0 | (to >> 8), to & 0xff]);

/** Label offsets `walkName` visits, or its error. */
function visits(buf: Buffer, start: number, rule: PointerRule): number[] | number {
  const seen: number[] = [];
  const end = walkName(buf, start, rule, (at) => seen.push(at));
  return end < 0 ? end : seen;
}

test('a name in place ends after its root label, under every rule; the root alone is one byte', () => {
  const buf = message(name(3, 7, 6), Buffer.from([0, 1, 0, 1]));
  for (const rule of ALL_RULES) {
    assert.equal(walkName(buf, HEADER_SIZE, rule), HEADER_SIZE + 1 + 4 + 8 + 7);
    assert.equal(walkName(Buffer.from([0]), 0, rule), 1);
    assert.deepEqual(visits(buf, HEADER_SIZE, rule), [12, 16, 24]);
  }
});

test('labels: 63 bytes are a label; 64-191 (0x40-0xbf) are the obsolete label types, under every rule', () => {
  for (const rule of ALL_RULES) {
    const at63 = name(63);
    assert.equal(walkName(at63, 0, rule), 65);
    for (const lengthByte of [64, 0x7f, 0x80, 0xbf]) {
      const buf = Buffer.concat([Buffer.from([lengthByte]), Buffer.alloc(lengthByte, 0x61), Buffer.from([0])]);
      assert.equal(walkName(buf, 0, rule), NameError.BAD_LABEL_TYPE, `length byte ${lengthByte}`);
    }
  }
  assert.equal(nameError(NameError.BAD_LABEL_TYPE), 'bad label type');
});

test('names: 255 bytes in all (length bytes and root included) are a name, 256 are not, except when a pointer may stop it', () => {
  const at255 = name(63, 63, 63, 61);
  const at256 = name(63, 63, 63, 62);
  assert.equal(at255.length, 255);
  assert.equal(at256.length, 256);
  for (const rule of ALL_RULES) assert.equal(walkName(at255, 0, rule), 255);
  assert.equal(walkName(at256, 0, Pointers.REFUSE), NameError.TOO_LONG);
  assert.equal(walkName(at256, 0, Pointers.FOLLOW), NameError.TOO_LONG);
  // STOP skips names whose rest may lie behind a pointer that is not read: their length is not checked.
  assert.equal(walkName(at256, 0, Pointers.STOP), 256);
  // The label that crosses the limit is not visited.
  assert.deepEqual(visits(at256, 0, Pointers.REFUSE), NameError.TOO_LONG);
  assert.equal(nameError(NameError.TOO_LONG), 'name longer than 255 bytes');
});

test('names: under FOLLOW the labels behind pointers count towards the 255 bytes', () => {
  const suffix = name(63, 63, 63); // 193 bytes at 12
  const target = HEADER_SIZE;
  const fits = message(suffix, Buffer.from([61]), Buffer.alloc(61, 0x62), pointer(target)); // 62 + 193 = 255
  const start = HEADER_SIZE + suffix.length;
  assert.equal(walkName(fits, start, Pointers.FOLLOW), fits.length);
  assert.deepEqual(visits(fits, start, Pointers.FOLLOW), [start, 12, 76, 140]);
  const over = message(suffix, Buffer.from([62]), Buffer.alloc(62, 0x62), pointer(target)); // 63 + 193 = 256
  assert.equal(walkName(over, start, Pointers.FOLLOW), NameError.TOO_LONG);
});

test('pointers: REFUSE refuses them, STOP ends the name at them without reading where they point', () => {
  const buf = message(name(1), Buffer.from([1, 0x62]), pointer(HEADER_SIZE));
  const start = HEADER_SIZE + 3;
  assert.equal(walkName(buf, start, Pointers.REFUSE), NameError.POINTER);
  assert.equal(walkName(message(pointer(0)), HEADER_SIZE, Pointers.REFUSE), NameError.POINTER);
  assert.equal(walkName(buf, start, Pointers.STOP), buf.length);
  assert.deepEqual(visits(buf, start, Pointers.STOP), [start]);
  // Even one pointing forward, at itself or into the header: STOP does not look.
  for (const to of [0, start + 2, buf.length + 10]) {
    const b = message(name(1), Buffer.from([1, 0x62]), pointer(to));
    assert.equal(walkName(b, start, Pointers.STOP), b.length);
  }
});

test('pointers: FOLLOW follows one pointing backwards and ends the name in place after the first pointer', () => {
  const buf = message(name(1, 2), Buffer.from([1, 0x62]), pointer(HEADER_SIZE), Buffer.from([0, 1, 0, 1]));
  const start = HEADER_SIZE + 6;
  assert.equal(walkName(buf, start, Pointers.FOLLOW), start + 4);
  assert.deepEqual(visits(buf, start, Pointers.FOLLOW), [start, 12, 14]);
  // Into the middle of an earlier name (its suffix), and a chain of pointers, each further back.
  const chain = message(name(1, 2), pointer(HEADER_SIZE + 2), Buffer.from([1, 0x63]), pointer(HEADER_SIZE + 6));
  assert.equal(walkName(chain, HEADER_SIZE + 8, Pointers.FOLLOW), chain.length);
  assert.deepEqual(visits(chain, HEADER_SIZE + 8, Pointers.FOLLOW), [20, 14]);
});

test('pointers: FOLLOW refuses one pointing forward, at itself, at the name it is in, back past an earlier target, or into the header', () => {
  const start = HEADER_SIZE + 3;
  const notBackwards = (buf: Buffer, from = start) => assert.equal(walkName(buf, from, Pointers.FOLLOW), NameError.NOT_BACKWARDS);
  // Forward, past the pointer.
  notBackwards(message(name(1), pointer(start + 2), name(1)));
  // At itself.
  notBackwards(message(name(1), pointer(start)));
  // At its own name's start, after a label: a loop.
  notBackwards(message(name(1), Buffer.from([1, 0x62]), pointer(start)));
  // Into the header.
  notBackwards(message(name(1), pointer(HEADER_SIZE - 1)));
  notBackwards(message(name(1), pointer(0)));
  // A chain that goes back and then forward again (to at or after the previous target): a loop.
  // At 12: a label, then a pointer to 17 (forward of 12); the name at 17 points back to 12.
  const loop = message(Buffer.from([1, 0x61]), pointer(HEADER_SIZE + 5), Buffer.from([0]), pointer(HEADER_SIZE));
  notBackwards(loop, HEADER_SIZE + 5);
  // Backwards from the name, but not from the previous target: 12 holds a label and a pointer to the
  // root at 16; the name at 17 points to 12. (A chain that keeps going back is fine.)
  notBackwards(message(Buffer.from([1, 0x61]), pointer(HEADER_SIZE + 4), Buffer.from([0]), pointer(HEADER_SIZE)), HEADER_SIZE + 5);
  const backAndBack = message(name(1), pointer(HEADER_SIZE), pointer(HEADER_SIZE + 3));
  assert.equal(walkName(backAndBack, HEADER_SIZE + 5, Pointers.FOLLOW), HEADER_SIZE + 7);
  assert.equal(nameError(NameError.NOT_BACKWARDS), 'compression pointer does not point backwards');
});

test('truncated names: a missing root, a label cut short, a pointer cut in half, a start past the end', () => {
  for (const rule of ALL_RULES) {
    const whole = name(3, 2);
    assert.equal(walkName(whole.subarray(0, whole.length - 1), 0, rule), NameError.PAST_END, 'no root');
    for (let cut = 1; cut < whole.length - 1; cut++) assert.equal(walkName(whole.subarray(0, cut), 0, rule), NameError.PAST_END, `cut at ${cut}`);
    assert.equal(walkName(Buffer.alloc(0), 0, rule), NameError.PAST_END);
    assert.equal(walkName(whole, whole.length, rule), NameError.PAST_END);
    // Only whole labels are visited: the one cut short (by one byte) is not.
    const seen: number[] = [];
    assert.equal(walkName(whole.subarray(0, 6), 0, rule, (at) => seen.push(at)), NameError.PAST_END);
    assert.deepEqual(seen, [0]);
  }
  const halfPointer = message(name(1), Buffer.from([1, 0x62, 0xc0]));
  assert.equal(walkName(halfPointer, HEADER_SIZE + 3, Pointers.STOP), NameError.POINTER_PAST_END);
  assert.equal(walkName(halfPointer, HEADER_SIZE + 3, Pointers.FOLLOW), NameError.POINTER_PAST_END);
  assert.equal(walkName(halfPointer, HEADER_SIZE + 3, Pointers.REFUSE), NameError.POINTER);
  assert.equal(nameError(NameError.PAST_END), 'name runs past the end');
  assert.equal(nameError(NameError.POINTER_PAST_END), 'pointer runs past the end');
});

test('a Uint8Array walks as a Buffer does, and walking neither changes nor keeps the bytes', () => {
  const buf = message(name(1, 2), Buffer.from([1, 0x62]), pointer(HEADER_SIZE));
  const copy = Buffer.from(buf);
  const plain = new Uint8Array(buf);
  assert.equal(walkName(plain, HEADER_SIZE + 6, Pointers.FOLLOW), walkName(buf, HEADER_SIZE + 6, Pointers.FOLLOW));
  assert.deepEqual(buf, copy);
});
