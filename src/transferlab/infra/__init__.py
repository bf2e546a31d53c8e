"""Support every layer uses: offline-first hub access (`hub`), licences, cache paths and atomic writes
(`paths`), secret redaction, results.json (`results`), logger factories."""
