// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.30;

/// @title MintVerifier: a test-only model of Hokusai's DeltaVerifier (MintRequest types of 2026-06).
/// @notice Written for tests/evm from the DeltaVerifier specification: it recomputes the EIP-712
/// digest of a MintRequest from its own copy of the type strings, recovers the attesters from the
/// signatures and applies the mint rules (threshold, ascending signers, idempotency key, deadline,
/// weight lineage, score and contributor bounds). It mints no token: a mint is the Minted event and
/// the per-model delta total. Every refusal is its own custom error so a test can tell them apart.
contract MintVerifier {
    struct BenchmarkAnchors {
        bytes32 benchmarkSpecHash;
        bytes32 datasetHash;
        bytes32 attestationHash;
        bytes32 idempotencyKey;
        string metricName;
        string metricFamily;
    }

    struct MintRequestPayload {
        string pipelineRunId;
        uint256 baselineScoreBps;
        uint256 candidateScoreBps;
        uint256 maxCostUsdMicro;
        uint256 actualCostUsdMicro;
        uint256 totalSamples;
        BenchmarkAnchors anchors;
        bytes32 baselineCommitment;
        bytes32 candidateCommitment;
        uint256 deadline;
    }

    struct Contributor {
        address walletAddress;
        uint256 weight;
    }

    // The type strings, each struct's followed by the types it references in alphabetical order.
    bytes32 public constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant ANCHORS_TYPEHASH = keccak256(
        "BenchmarkAnchors(bytes32 benchmarkSpecHash,bytes32 datasetHash,bytes32 attestationHash,"
        "bytes32 idempotencyKey,string metricName,string metricFamily)"
    );
    bytes32 public constant CONTRIBUTOR_TYPEHASH = keccak256("Contributor(address walletAddress,uint256 weight)");
    bytes32 public constant PAYLOAD_TYPEHASH = keccak256(
        "MintRequestPayload(string pipelineRunId,uint256 baselineScoreBps,uint256 candidateScoreBps,"
        "uint256 maxCostUsdMicro,uint256 actualCostUsdMicro,uint256 totalSamples,BenchmarkAnchors anchors,"
        "bytes32 baselineCommitment,bytes32 candidateCommitment,uint256 deadline)"
        "BenchmarkAnchors(bytes32 benchmarkSpecHash,bytes32 datasetHash,bytes32 attestationHash,"
        "bytes32 idempotencyKey,string metricName,string metricFamily)"
    );
    bytes32 public constant MINT_REQUEST_TYPEHASH = keccak256(
        "MintRequest(uint256 modelId,MintRequestPayload payload,Contributor[] contributors)"
        "BenchmarkAnchors(bytes32 benchmarkSpecHash,bytes32 datasetHash,bytes32 attestationHash,"
        "bytes32 idempotencyKey,string metricName,string metricFamily)"
        "Contributor(address walletAddress,uint256 weight)"
        "MintRequestPayload(string pipelineRunId,uint256 baselineScoreBps,uint256 candidateScoreBps,"
        "uint256 maxCostUsdMicro,uint256 actualCostUsdMicro,uint256 totalSamples,BenchmarkAnchors anchors,"
        "bytes32 baselineCommitment,bytes32 candidateCommitment,uint256 deadline)"
    );
    bytes32 private constant NAME_HASH = keccak256("HokusaiDeltaVerifier");
    bytes32 private constant VERSION_HASH = keccak256("1");

    uint256 public constant MAX_SCORE_BPS = 10_000;
    uint256 public constant TOTAL_WEIGHT_BPS = 10_000;
    uint256 public constant MAX_CONTRIBUTORS = 100;
    /// secp256k1n / 2: a signature with a larger s is the malleable twin of one with a smaller s.
    uint256 private constant HALF_CURVE_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    address public owner;
    /// Minimum number of attester signatures per request; 0 refuses every request (fail closed).
    uint256 public attesterThreshold;
    mapping(address => bool) public isAttester;
    mapping(bytes32 => bool) public idempotencyKeyUsed;
    mapping(uint256 => bytes32) private _heads;
    mapping(uint256 => uint256) public totalDeltaBps;

    event AttesterSet(address indexed attester, bool enabled);
    event ThresholdSet(uint256 threshold);
    event GenesisSet(uint256 indexed modelId, bytes32 commitment);
    event Minted(uint256 indexed modelId, bytes32 indexed idempotencyKey, uint256 deltaBps);
    event ContributorCredited(
        uint256 indexed modelId, bytes32 indexed idempotencyKey, address indexed walletAddress, uint256 weight
    );
    event HeadAdvanced(uint256 indexed modelId, bytes32 previousHead, bytes32 newHead);

    error NotOwner();
    error ZeroAddress();
    error ThresholdNotSet();
    error InsufficientSignatures(uint256 provided, uint256 required);
    error InvalidSignatureLength(uint256 index);
    error InvalidSignatureV(uint256 index);
    error MalleableSignature(uint256 index);
    error InvalidSignature(uint256 index);
    error UnknownAttester(uint256 index, address signer);
    error DuplicateSigner(uint256 index, address signer);
    error SignersNotAscending(uint256 index, address signer);
    error ZeroIdempotencyKey();
    error IdempotencyKeyUsed(bytes32 idempotencyKey);
    error DeadlineExpired(uint256 deadline, uint256 timestamp);
    error GenesisAlreadySet(uint256 modelId);
    error ZeroCommitment();
    error UnknownModel(uint256 modelId);
    error LineageMismatch(bytes32 baselineCommitment, bytes32 currentHead);
    error ZeroCandidateCommitment();
    error ScoreOutOfRange(uint256 score);
    error ContributorCount(uint256 count);
    error ZeroContributor(uint256 index);
    error DuplicateContributor(uint256 index, address walletAddress);
    error WeightsNotTotal(uint256 total);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    constructor() {
        owner = msg.sender;
    }

    // ----- owner configuration -----

    function setAttester(address attester, bool enabled) external onlyOwner {
        if (attester == address(0)) revert ZeroAddress();
        isAttester[attester] = enabled;
        emit AttesterSet(attester, enabled);
    }

    function setAttesterThreshold(uint256 threshold) external onlyOwner {
        attesterThreshold = threshold;
        emit ThresholdSet(threshold);
    }

    /// The first head of a model's weight lineage; set once.
    function setGenesis(uint256 modelId, bytes32 commitment) external onlyOwner {
        if (commitment == bytes32(0)) revert ZeroCommitment();
        if (_heads[modelId] != bytes32(0)) revert GenesisAlreadySet(modelId);
        _heads[modelId] = commitment;
        emit GenesisSet(modelId, commitment);
    }

    function currentHead(uint256 modelId) external view returns (bytes32) {
        return _heads[modelId];
    }

    // ----- EIP-712 -----

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// The EIP-712 digest the attesters sign: keccak256(0x19 0x01 || domainSeparator || hashStruct).
    function hashMintRequest(
        uint256 modelId,
        MintRequestPayload calldata payload,
        Contributor[] calldata contributors
    ) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(MINT_REQUEST_TYPEHASH, modelId, _hashPayload(payload), _hashContributors(contributors))
        );
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    function _hashAnchors(BenchmarkAnchors calldata a) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                ANCHORS_TYPEHASH,
                a.benchmarkSpecHash,
                a.datasetHash,
                a.attestationHash,
                a.idempotencyKey,
                keccak256(bytes(a.metricName)),
                keccak256(bytes(a.metricFamily))
            )
        );
    }

    function _hashPayload(MintRequestPayload calldata p) private pure returns (bytes32) {
        // Two abi.encode calls of static words concatenate to the one encoding of all eleven words;
        // split only to keep the stack shallow.
        bytes memory head = abi.encode(
            PAYLOAD_TYPEHASH,
            keccak256(bytes(p.pipelineRunId)),
            p.baselineScoreBps,
            p.candidateScoreBps,
            p.maxCostUsdMicro,
            p.actualCostUsdMicro
        );
        bytes memory tail =
            abi.encode(p.totalSamples, _hashAnchors(p.anchors), p.baselineCommitment, p.candidateCommitment, p.deadline);
        return keccak256(bytes.concat(head, tail));
    }

    function _hashContributors(Contributor[] calldata contributors) private pure returns (bytes32) {
        bytes32[] memory hashes = new bytes32[](contributors.length);
        for (uint256 i = 0; i < contributors.length; i++) {
            hashes[i] = keccak256(abi.encode(CONTRIBUTOR_TYPEHASH, contributors[i].walletAddress, contributors[i].weight));
        }
        return keccak256(abi.encodePacked(hashes));
    }

    // ----- submission -----

    function submitMintRequest(
        uint256 modelId,
        MintRequestPayload calldata payload,
        Contributor[] calldata contributors,
        bytes[] calldata signatures
    ) external returns (uint256 deltaBps) {
        _checkSignatures(hashMintRequest(modelId, payload, contributors), signatures);

        bytes32 key = payload.anchors.idempotencyKey;
        if (key == bytes32(0)) revert ZeroIdempotencyKey();
        if (idempotencyKeyUsed[key]) revert IdempotencyKeyUsed(key);
        if (block.timestamp > payload.deadline) revert DeadlineExpired(payload.deadline, block.timestamp);

        bytes32 head = _heads[modelId];
        if (head == bytes32(0)) revert UnknownModel(modelId);
        if (payload.baselineCommitment != head) revert LineageMismatch(payload.baselineCommitment, head);
        if (payload.candidateCommitment == bytes32(0)) revert ZeroCandidateCommitment();

        if (payload.baselineScoreBps > MAX_SCORE_BPS) revert ScoreOutOfRange(payload.baselineScoreBps);
        if (payload.candidateScoreBps > MAX_SCORE_BPS) revert ScoreOutOfRange(payload.candidateScoreBps);
        _checkContributors(contributors);

        deltaBps = payload.candidateScoreBps > payload.baselineScoreBps
            ? payload.candidateScoreBps - payload.baselineScoreBps
            : 0;

        // Commit: the key is burned whatever the delta; only a paying mint moves the lineage head.
        idempotencyKeyUsed[key] = true;
        if (deltaBps > 0) {
            _heads[modelId] = payload.candidateCommitment;
            emit HeadAdvanced(modelId, head, payload.candidateCommitment);
        }
        totalDeltaBps[modelId] += deltaBps;
        emit Minted(modelId, key, deltaBps);
        for (uint256 i = 0; i < contributors.length; i++) {
            emit ContributorCredited(modelId, key, contributors[i].walletAddress, contributors[i].weight);
        }
    }

    function _checkSignatures(bytes32 digest, bytes[] calldata signatures) private view {
        uint256 threshold = attesterThreshold;
        if (threshold == 0) revert ThresholdNotSet();
        if (signatures.length < threshold) revert InsufficientSignatures(signatures.length, threshold);
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; i++) {
            address signer = _recover(digest, signatures[i], i);
            if (!isAttester[signer]) revert UnknownAttester(i, signer);
            if (signer == previous) revert DuplicateSigner(i, signer);
            if (signer < previous) revert SignersNotAscending(i, signer);
            previous = signer;
        }
    }

    function _recover(bytes32 digest, bytes calldata signature, uint256 index) private pure returns (address) {
        if (signature.length != 65) revert InvalidSignatureLength(index);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v != 27 && v != 28) revert InvalidSignatureV(index);
        if (uint256(s) > HALF_CURVE_ORDER) revert MalleableSignature(index);
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature(index);
        return signer;
    }

    function _checkContributors(Contributor[] calldata contributors) private pure {
        uint256 count = contributors.length;
        if (count == 0 || count > MAX_CONTRIBUTORS) revert ContributorCount(count);
        uint256 total = 0;
        for (uint256 i = 0; i < count; i++) {
            address wallet = contributors[i].walletAddress;
            if (wallet == address(0)) revert ZeroContributor(i);
            for (uint256 j = 0; j < i; j++) {
                if (contributors[j].walletAddress == wallet) revert DuplicateContributor(i, wallet);
            }
            total += contributors[i].weight;
        }
        if (total != TOTAL_WEIGHT_BPS) revert WeightsNotTotal(total);
    }
}
