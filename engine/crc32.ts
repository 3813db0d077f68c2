/**
 * CRC-32 (ISO-HDLC, polynomial 0xEDB88320 reflected), as PNG chunks and zip entries use it.
 *
 * This module is browser compatible.
 * @module
 */

const TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/**
 * Continues a CRC-32 over `bytes` (start with the default 0; feed chunks in order).
 *
 * @param bytes The data.
 * @param crc The CRC of what came before.
 * @returns The CRC-32 as an unsigned 32-bit integer.
 * @example
 * ```ts
 * crc32(new TextEncoder().encode("123456789")); // 0xcbf43926
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
