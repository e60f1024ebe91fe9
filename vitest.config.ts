import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.spec.ts'],
    // Node 20 lacks Promise.withResolvers, which libp2p's dependencies call.
    setupFiles: ['src/polyfill.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
