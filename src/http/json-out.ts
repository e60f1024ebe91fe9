/**
 * Where JSON text is written piece by piece, for answers built at tens of thousands a
 * second: as bytes (ByteOut) there is no string concatenation, no flattening and no
 * conversion of the finished text; as a string (StringOut) for tests and slow paths.
 */
export interface JsonOut {
  /** Appends text made of ASCII characters only (one byte each). */
  ascii(s: string): void
  /** Appends String(n). */
  number(n: number): void
}

/** JsonOut into a string. */
export class StringOut implements JsonOut {
  text = ''
  ascii (s: string): void { this.text += s }
  number (n: number): void { this.text += String(n) }
}

/** A JSON number: non-finite numbers are null, as JSON.stringify writes them. */
export function jsonNumber (out: JsonOut, n: number): void {
  if (Number.isFinite(n)) out.number(n)
  else out.ascii('null')
}

// As node's own Buffer pool: a response its socket cannot send yet keeps at most this much alive.
const SLAB = 8 * 1024

/**
 * JsonOut into bytes: pieces are written into a slab one after the other and finish()
 * hands out a view of the piece just written. A finished view is never written over
 * (the next piece starts after it; a full slab is replaced, not reused), so it can be
 * handed to a socket that sends it later. One view object per piece is all it allocates,
 * plus a slab every 8 KiB (a view keeps its slab alive, as a slice of node's pool does).
 */
export class ByteOut implements JsonOut {
  private slab: Buffer
  private start = 0
  private pos = 0

  constructor (private readonly slabSize = SLAB) {
    this.slab = Buffer.allocUnsafeSlow(slabSize)
  }

  /** Starts a piece, dropping whatever an unfinished one (a thrown error) left. */
  begin (): void {
    this.pos = this.start
  }

  ascii (s: string): void {
    const n = s.length
    if (this.pos + n > this.slab.length) this.grow(n)
    this.slab.write(s, this.pos, n, 'latin1')
    this.pos += n
  }

  /** Appends any text, as UTF-8. */
  utf8 (s: string): void {
    const n = Buffer.byteLength(s)
    if (this.pos + n > this.slab.length) this.grow(n)
    this.slab.write(s, this.pos, n, 'utf8')
    this.pos += n
  }

  number (n: number): void {
    // Whole non-negative numbers (nearly all) digit by digit; others as String() writes them.
    if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER && Math.floor(n) === n)) {
      this.ascii(String(n))
      return
    }
    let digits = 1
    for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++
    if (this.pos + digits > this.slab.length) this.grow(digits)
    let p = this.pos + digits
    do {
      this.slab[--p] = 48 + (n % 10)
      n = Math.floor(n / 10)
    } while (n > 0)
    this.pos += digits
  }

  /** The piece written since begin(), as a view that stays valid. */
  finish (): Buffer {
    const piece = this.slab.subarray(this.start, this.pos)
    this.start = this.pos
    return piece
  }

  private grow (need: number): void {
    const used = this.pos - this.start
    const next = Buffer.allocUnsafeSlow(Math.max(this.slabSize, 2 * (used + need)))
    this.slab.copy(next, 0, this.start, this.pos)
    this.slab = next
    this.start = 0
    this.pos = used
  }
}
