// Preloaded into an Azurite (node --require) by tests/test_doctor.py: shifts Azurite's clock by
// RETIER_TEST_CLOCK_OFFSET_MS, so the blobs it stores carry a Last-Modified days in the past.
// Azure offers no way to backdate Last-Modified, and Azurite does not check request dates.
const offset = Number(process.env.RETIER_TEST_CLOCK_OFFSET_MS || 0);
const RealDate = Date;
class ShiftedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
global.Date = ShiftedDate;
