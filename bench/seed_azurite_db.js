#!/usr/bin/env node
// Fill a stopped Azurite's on-disk blob metadata store with many blobs at once.
//
// Usage: node seed_azurite_db.js <azurite --location dir> <container> <names file>
//
// Azurite 3.35 (LokiJS) makes every Put Blob scan every blob of the account, so uploading
// 100,000 blobs takes about an hour. This writes the same records directly, with Azurite's own
// LokiJS (so the indexes are built the way Azurite builds them). The directory must hold a
// store that Azurite itself wrote and closed, with the container and exactly one blob in it:
// that blob is the template, and every new blob is a copy of it under another name (same
// one-byte body in the same extent, same properties). The template is removed. Each line of
// the names file is one blob name; a tab and a tier after it ("Cold", "Archive", ...) gives
// that blob that tier instead of the template's.
//
// Nothing here is used by retier; it only makes benchmark containers quicker to build.
"use strict";

const fs = require("fs");
const path = require("path");
const Loki = require("lokijs");

const BLOBS = "$BLOBS_COLLECTION$";
const INDEXED = ["accountName", "containerName", "name", "snapshot"];

function fail(message) {
  process.stderr.write(`seed_azurite_db: ${message}\n`);
  process.exit(1);
}

const [dir, container, namesFile] = process.argv.slice(2);
if (!dir || !container || !namesFile) {
  fail("usage: node seed_azurite_db.js <azurite --location dir> <container> <names file>");
}
const dbPath = path.join(dir, "__azurite_db_blob__.json");
if (!fs.existsSync(dbPath)) fail(`${dbPath}: no Azurite store (start and stop Azurite with --location first)`);

const entries = fs
  .readFileSync(namesFile, "utf8")
  .split("\n")
  .filter((line) => line.length > 0)
  .map((line) => {
    const [name, tier] = line.split("\t");
    return { name, tier };
  });

const db = new Loki(dbPath);
db.loadDatabase({}, (err) => {
  if (err) fail(`cannot load ${dbPath}: ${err}`);
  const blobs = db.getCollection(BLOBS);
  if (!blobs) fail(`${dbPath}: no ${BLOBS} collection`);
  const existing = blobs.find({ containerName: container });
  if (existing.length !== 1) fail(`container ${container} must hold exactly one template blob, holds ${existing.length}`);
  const template = existing[0];
  blobs.remove(template);

  // Insert without maintaining the indexes per document (that is O(n) each), then rebuild them
  // once, sorted, exactly as LokiJS would on first use; then restore Azurite's setting.
  const adaptive = blobs.adaptiveBinaryIndices;
  blobs.adaptiveBinaryIndices = false;
  const docs = entries.map(({ name, tier }) => {
    const doc = JSON.parse(JSON.stringify(template));
    delete doc.$loki;
    delete doc.meta;
    doc.name = name;
    if (tier) {
      doc.properties.accessTier = tier;
      doc.properties.accessTierInferred = false;
    }
    return doc;
  });
  blobs.insert(docs);
  for (const property of INDEXED) blobs.ensureIndex(property, true);
  blobs.adaptiveBinaryIndices = adaptive;

  const count = blobs.find({ containerName: container }).length;
  if (count !== entries.length) fail(`wrote ${count} blobs, expected ${entries.length}`);
  db.saveDatabase((saveErr) => {
    if (saveErr) fail(`cannot save ${dbPath}: ${saveErr}`);
    process.stdout.write(`${count}\n`);
  });
});
