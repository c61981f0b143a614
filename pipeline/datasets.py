"""The inventory of data/raw/: every file the pipeline downloads, where it goes, where to get it, and its pinned sha256.

Each file has two sources, tried in order by `pipeline.download`: the local mirror (params `download.mirror`, the layout
of ../shared/data) and the public URL. GitHub URLs name the commit the mirror was copied from, so both sources serve the
same bytes and one pin covers both.
"""
from dataclasses import dataclass

from pipeline.labels import EMOTIONS

# What the raw files are pinned to, in `sha256sum` format (digest, two spaces, path under data/raw/). A path may appear on
# several lines: any of its digests is accepted. A path absent here is unpinned (its digest is only recorded).
# The ED line is the mirror's rebuild of the tarball (see ../shared/data/empatheticdialogues/SOURCE.md); the official
# tarball's digest is unknown, so it is refused under `download.verify: pinned` until its line is added here.
SHA256SUMS = """\
4a4aa42a852f113ca4b0180841d7c8acca2a83cd55a1e62d9036d95ed6deaf6e  ed/empatheticdialogues.tar.gz
225b28ffdc257f8a997d557eb937e78b68235e6203c87c7e2203d00fef8545cc  epitome/emotional-reactions-reddit.csv
9efa1af8e0537c16894379598f2076cb380ae18aacd9a8d26ebd381f5b7f9645  epitome/explorations-reddit.csv
2cedbe4252c919d22a6f46685afa16d3192a91e3306c2d4a386be12a30ad3f29  epitome/interpretations-reddit.csv
dd0adb021f556e808c2edcf9d1bca138e18d93486e1c8237593394e4ebdf7995  intents/lexically_extended_intent_data/test/acknowleding.txt
798b0276be343156f417379cd7a8a96467fac4fd36ae76ecdc7cdb903ab2eaeb  intents/lexically_extended_intent_data/test/agreeing.txt
0405aa1304bb4f1c769437d927b770920235f40767d1551fa4b9970e282df34e  intents/lexically_extended_intent_data/test/consoling.txt
cc8cc5a72f738620a8dd8580b0bfc3d5b2dcc0be81ce28e528912a086edfed3a  intents/lexically_extended_intent_data/test/encouraging.txt
58488a0bfb8ce7f1770ca9c451462b907cd5a43e27e6388655ac8e8ba9374e3f  intents/lexically_extended_intent_data/test/neutral.txt
5a181df5c1d78050f6dca3bb5bf4f4426d1811f41f4067a5cef6cb7890bce0ff  intents/lexically_extended_intent_data/test/questioning.txt
3e714efdc6bdf51cef6b7498f4a775341d5f533bef68d7d5e87f22f569d0ce1b  intents/lexically_extended_intent_data/test/suggesting.txt
b3000e197f60f1af138319fe7316537cb95168a5621d9259aab2a6faba0e9b34  intents/lexically_extended_intent_data/test/sympathizing.txt
dfcd0791817b6c61d2ae995d037726829c9a28ef097b54378e0062069e95de85  intents/lexically_extended_intent_data/test/wishing.txt
ec0a21bdb4cac195fdb3fe82fd31662171ea6c3b18a3239ba92c0e2b1112ede6  intents/lexically_extended_intent_data/train/acknowleding.txt
3ef57f77f3aa93b5e0c7fb3150c914041661137edb69ec75e55c8a7e42b31209  intents/lexically_extended_intent_data/train/agreeing.txt
909b0e6893aa054c32fdf2112d9a71c17fe1b5aa02dc5b0408765aa3ce7d87d5  intents/lexically_extended_intent_data/train/consoling.txt
cbcbe0fd354e81050df5e4a2de8a3d3f1125ec95375b08e7e07c44456c21943b  intents/lexically_extended_intent_data/train/encouraging.txt
4ee76d008c442430562d7165b95f8f0328c7020e0783441f5f01e29c0e8f96fb  intents/lexically_extended_intent_data/train/neutral.txt
5515ef12ef6a01bbcb331babee699a2788e04a9157227a98f24467d73f2ba31a  intents/lexically_extended_intent_data/train/questioning.txt
c29611089c8861e85e0f84409399a71dfd1d3dd225fa4f3b153487588856c83f  intents/lexically_extended_intent_data/train/suggesting.txt
3d0416877c6fc7d32a37e64ce2f4667f639812b03a1c31d61ea1a3bff7383577  intents/lexically_extended_intent_data/train/sympathizing.txt
9c5fe2a3f7134a5b03088f1c867fdc2b86bb0beef8731fe8d55889f5103b3c8d  intents/lexically_extended_intent_data/train/wishing.txt
cb5dbbb42beeaa863a2710050be0f7329543e8b8ab3122e00845d58e08e98b47  intents/lexically_extended_intent_data/validation/acknowleding.txt
9b3aaf5e2cfd1f2def1d068ce81af0abd1d1e877758a8e3c9be14d6151a9899e  intents/lexically_extended_intent_data/validation/agreeing.txt
67cbbfe26c60097e0d6c7d72e11d6914be547383006b6c178bd1972f12194af8  intents/lexically_extended_intent_data/validation/consoling.txt
4aa8cf390fef32d3b12ebe2a6b5d36ce356765f5c93cffaf9a4310d0721d4c14  intents/lexically_extended_intent_data/validation/encouraging.txt
03a50b84382979b11f0e3d2d1b9a0d5dbe8040481fff6eb98d6ab057d6694347  intents/lexically_extended_intent_data/validation/neutral.txt
9fc854127b62bf63c71b8230e5f253454da5cfbb688ce8bb0faf35e6f66cefc3  intents/lexically_extended_intent_data/validation/questioning.txt
a1e1f251d1ba74c37dac6a88b60eeda16744e6d1ca93d57fa248ec10cc4c38a7  intents/lexically_extended_intent_data/validation/suggesting.txt
d08be74fd7695139fd480b3a6f02cfe57106c3e416f38c3c676ce3bf8ee5d05d  intents/lexically_extended_intent_data/validation/sympathizing.txt
2d422c833aa53369e7a4b5e932e6c8a521665ce9086c6ea0bd46594d4554ee77  intents/lexically_extended_intent_data/validation/wishing.txt
2f777f898ef05727e0add0132a4559268484d42d1df32b1e06dec43aa5fd697d  intents/empatheticdialogues_annotated/afraid.csv
cbe46ed53b894ef7fdc60a20e80a328686d6168ecea8712a435f2c14e8123959  intents/empatheticdialogues_annotated/angry.csv
24705634fa1ef208b624ab36fa9f9d447db0d8b96a9d426041eb1246463d44b1  intents/empatheticdialogues_annotated/annoyed.csv
f2f07d654fbd83ebb5e225bc39c491a8608f35d3f525260f7715d443732ee682  intents/empatheticdialogues_annotated/anticipating.csv
d0401f598e8db3523f71873cb3f53449811056e0a2122cd6d40f2796c1ab0f30  intents/empatheticdialogues_annotated/anxious.csv
09a41daccd89bcaad8b73345138897fd2717797be8bb876e3654daa111840cba  intents/empatheticdialogues_annotated/apprehensive.csv
aa55c0e4ca6b35e85905d33129d6bc3299f07648c071717850beb36358ea027e  intents/empatheticdialogues_annotated/ashamed.csv
3cf84e90f5c70ec852505f83c60c6dc3c11a891c04176b69548cb7f3249e3c89  intents/empatheticdialogues_annotated/caring.csv
acc6b3b52732c270be4dad4329d3d3a68bd35bfa44730afa52e3ce2c07ea14e9  intents/empatheticdialogues_annotated/confident.csv
5fb1ee5a6314482e16927a8e30f35609662cd7b0d9d2debf9ef9b6f3a435f01b  intents/empatheticdialogues_annotated/content.csv
5c6b721b9d6bf3934d96ae0140232fdf003df58e7c195279d3de5fb9775f36e6  intents/empatheticdialogues_annotated/devastated.csv
9e5f90c72099086a5b14ada134a1a34b5b1552d68aa856c5fea3b9a05a5b0cf3  intents/empatheticdialogues_annotated/disappointed.csv
31abbcfee8be1a9f70bfe0e18af7a8ed48106cb8fa6cbc7aaf800fce84cc3ead  intents/empatheticdialogues_annotated/disgusted.csv
2164b3bc7f3247ac620face4e5187cc37e49b420ae02399751ae83dd04ce2947  intents/empatheticdialogues_annotated/embarrassed.csv
4acaac1bdb09cd67864f622847dbbaa78fd3675dec3a1903cbcacb755b73ac72  intents/empatheticdialogues_annotated/excited.csv
ff36e9361653b684fcb14bff78fef6890d419bb00e6c174bc3b72195c61b4fa4  intents/empatheticdialogues_annotated/faithful.csv
bb56a0f0ad238f98d5898fd4bf74e383b8de691de6f7c02dc0a56f8124078571  intents/empatheticdialogues_annotated/furious.csv
16510ce9c3ba92fdd719dcdff261d65bd074fe8df5e8cde0504915dd595f9ec7  intents/empatheticdialogues_annotated/grateful.csv
800a578339589d8a7fd52a38ee276beb81edc0194408e03ea07c6ee846f19f02  intents/empatheticdialogues_annotated/guilty.csv
0918b00ec16cd8c8d01b869ccee775720a2dd15084084e53d177ae1f48f37412  intents/empatheticdialogues_annotated/hopeful.csv
c6ce2d2dff49e9d8f85f96d2b35c99fd91339114281e3f7286332c5c61b3141c  intents/empatheticdialogues_annotated/impressed.csv
2a2a30caa2e030860e9e5ba09f614f1703ba0151b5a22058df19272f62ed01f5  intents/empatheticdialogues_annotated/jealous.csv
5227602a9f176788363699cd7da2a4c6a6853e2f93944ef1a19f29063dee9c0d  intents/empatheticdialogues_annotated/joyful.csv
5b197d2a21604dc30878b4b22fcca2d9d6b7856d7ec45e1183b56dd8f2de87e2  intents/empatheticdialogues_annotated/lonely.csv
6e2abf53fc47ba638c4f7b591481c4f5cf5660b1f942d1de7c7ac5fa0b4ed558  intents/empatheticdialogues_annotated/nostalgic.csv
16076df4da4902a22b1bdeac9a84e5391d90c976648f729ac626bdfc7b694a9d  intents/empatheticdialogues_annotated/prepared.csv
6dad3323062fd9fbbd538fd22a6bd0e96eda842c89b4ead20eec8117c6ac09ff  intents/empatheticdialogues_annotated/proud.csv
49d387dbae013b682313fbd01eef52980d825cb1b29367a90847239d9f6af427  intents/empatheticdialogues_annotated/sad.csv
57064ff3d471e839837b437ee2b9129e386249d40840df7ac22b71e9a324132c  intents/empatheticdialogues_annotated/sentimental.csv
ef2b91e17bbde30c656bbefd498c08aced54e5d8524beb222222726a4ae46f5e  intents/empatheticdialogues_annotated/surprised.csv
5b4128ccf7077d7e8773859f3e42e5192404bd839ecffd574b0d822d55cda60f  intents/empatheticdialogues_annotated/terrified.csv
ec3c06c9a7ff71db017323c437d00fa8f089d4c2c3ab31e4327abaf25b79daf0  intents/empatheticdialogues_annotated/trusting.csv
a48376f12b60f501a823dad91021ca76b52609a98fc3844972dca712f7896be0  framenet/FN17_enlu_id.json
f37e71e6a2a2c5f987d5e30f80938bd1be029f9426f5e0a1f9f501ab676248d3  framenet/FN17_frame2id.json
4bc5e5f7b9f3f891086494cd21c8286a3a5d2825bfb061dd5d87fbe348075e96  framenet/FN17_frame_lu.json
3678b6209debbd9c89c61771f44dba91cb42c6f4f367fc322f1ba19c571754b9  framenet/fn1.7_fe2idx.json
c129317d537250f4827607f73919db1fdffaadcd491189a9a5b8fbbe41505294  framenet/fn1.7_frame2idx.json
8da8c9d6b6a6fbe799e676324663be95530b154bd53aa3b21e18925988144c86  framenet/fn1.7_frame_definitions.json
59ed601293190b993d34aec9e10e23602eded75062d9815056eaefddfc462377  framenet/fn1.7_frargmap.json
527e07cdaacab760b367427352598e3cf208be594923bd49d74e0c2093559a6d  framenet/fn1.7_lu2idx.json
f28f5850cbf597072f297132714d1522ccca34815d57fdedc21ce1306c4a7b34  framenet/fn1.7_lufrmap.json
"""


def _parse_sums(text: str) -> dict[str, tuple[str, ...]]:
    pins: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        digest, path = line.split("  ", 1)
        pins[path] = pins.get(path, ()) + (digest,)
    return pins


PINS = _parse_sums(SHA256SUMS)


@dataclass(frozen=True)
class RawFile:
    """One downloaded file.

    dest: path under data/raw/ (also its key in the manifest and in PINS).
    mirror: path under the mirror root.
    url: the public source, tried when the mirror lacks the file.
    members: for an archive, (member name, dest under data/raw/) pairs to extract; the archive itself is not kept.
    """

    dest: str
    mirror: str
    url: str
    members: tuple[tuple[str, str], ...] = ()

    @property
    def sha256(self) -> tuple[str, ...]:
        """Accepted digests; empty when the file is not pinned."""
        return PINS.get(self.dest, ())


ED_SPLITS = ("train", "valid", "test")
ED = RawFile(
    dest="ed/empatheticdialogues.tar.gz",
    mirror="empatheticdialogues/empatheticdialogues.tar.gz",
    url="https://dl.fbaipublicfiles.com/parlai/empatheticdialogues/empatheticdialogues.tar.gz",
    members=tuple((f"empatheticdialogues/{s}.csv", f"ed/{s}.csv") for s in ED_SPLITS),
)

_EPITOME_URL = "https://raw.githubusercontent.com/behavioral-data/Empathy-Mental-Health/0e11f98901527550885dbf253bd2af92dbcec43b/dataset"
EPITOME = tuple(
    RawFile(f"epitome/{name}", f"epitome_reddit/{name}", f"{_EPITOME_URL}/{name}")
    for name in ("emotional-reactions-reddit.csv", "interpretations-reddit.csv", "explorations-reddit.csv")
)

# EmpatheticIntents: note the upstream file-name typo `acknowleding.txt` (label 33 = acknowledging).
_INTENTS_URL = "https://raw.githubusercontent.com/anuradha1992/EmpatheticIntents/0f7e51ac3796d5cd595c688489de2fea22c75041/datasets"
INTENT_SPLITS = ("train", "validation", "test")
INTENT_FILES = ("acknowleding", "agreeing", "consoling", "encouraging", "neutral", "questioning", "suggesting",
                "sympathizing", "wishing")
_intent_paths = [f"lexically_extended_intent_data/{s}/{name}.txt" for s in INTENT_SPLITS for name in INTENT_FILES]
_intent_paths += [f"empatheticdialogues_annotated/{emotion}.csv" for emotion in EMOTIONS]
INTENTS = tuple(RawFile(f"intents/{p}", f"empathetic_intents/{p}", f"{_INTENTS_URL}/{p}") for p in _intent_paths)

_FRAMENET_URL = "https://raw.githubusercontent.com/machinereading/koreanframenet/5606eca7febd8794b126f0ed7c7804efd855992b/resource/info"
FRAMENET_FILES = ("FN17_enlu_id.json", "FN17_frame2id.json", "FN17_frame_lu.json", "fn1.7_fe2idx.json",
                  "fn1.7_frame2idx.json", "fn1.7_frame_definitions.json", "fn1.7_frargmap.json", "fn1.7_lu2idx.json",
                  "fn1.7_lufrmap.json")
FRAMENET = tuple(RawFile(f"framenet/{name}", f"framenet17/{name}", f"{_FRAMENET_URL}/{name}") for name in FRAMENET_FILES)

INVENTORY: tuple[RawFile, ...] = (ED, *EPITOME, *INTENTS, *FRAMENET)
