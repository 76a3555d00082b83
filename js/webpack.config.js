// Module ids named by their path inside this package rather than hashed, so that the
// committed build is the same whatever folder the checkout is in (CI checks it is).
module.exports = {
  optimization: { moduleIds: 'named', chunkIds: 'named' }
};
