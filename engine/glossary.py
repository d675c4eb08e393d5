"""Plain-language explanations of every number, plot and verdict the workbench shows.

Written for someone who knows no linear algebra. The window's "What is this?" button
shows the entries of the tab in view; the README's glossary holds the same text (a test
keeps them equal). Torch-free: the window reads it before the engine loads.
"""

from __future__ import annotations

#: key -> (title, explanation)
GLOSSARY: dict[str, tuple[str, str]] = {
    "self_supervised": (
        "Self-supervised learning",
        "Learning from data without labels by inventing a task whose answer is in the data "
        "itself: recognise two crops of the same picture, paint back a hidden part, guess "
        "the next word. What the network learns on the way is then useful for other tasks."),
    "views": (
        "Views",
        "The versions of each picture (or text) the method actually trains on: random "
        "crops and colour changes, hidden patches, rotated copies. What the method is asked "
        "to ignore between two views is what it learns to ignore."),
    "loss": (
        "Loss",
        "The number the training tries to make small: how badly the network does at its "
        "task on the current batch. A falling loss means the task gets easier for it, not "
        "necessarily that it learns anything useful: a collapsed network can have a "
        "perfect loss."),
    "knn": (
        "kNN accuracy",
        "For each image of a fixed test set, look up its nearest neighbours in the "
        "network's embedding and let them vote on its class. High means images of the same "
        "kind end up close together. The labels are used only for this score, never for "
        "training."),
    "baseline": (
        "Random-init baseline",
        "The same kNN score for the same network before any training, with random weights "
        "(the dashed line). Even random networks score above guessing on simple data, so "
        "learning shows as the distance above this line, not above zero."),
    "chance": (
        "Chance",
        "What guessing would score: one in the number of classes (or of possible answers)."),
    "embedding": (
        "Embedding",
        "The list of numbers the network turns an image or text into. Similar inputs should "
        "get similar lists; the embedding map draws them as points on a page."),
    "umap": (
        "Embedding map (UMAP)",
        "A flat drawing of the embeddings in which points that are close in the embedding "
        "stay close on the page. Colours are the true classes: clusters of one colour mean "
        "the network has learned to tell those classes apart."),
    "std": (
        "Per-dimension spread (std)",
        "How much the embeddings differ from image to image, on average over their numbers, "
        "next to the spread they would have if they were spread out evenly (1/√d). If it "
        "falls towards zero, every image is getting the same embedding."),
    "rank": (
        "Effective rank",
        "How many independent directions the embeddings really use, out of all they have. "
        "A network that uses only a handful can tell few things apart, even if its spread "
        "looks fine."),
    "spectrum": (
        "Spectrum",
        "How much the embeddings vary along each of their directions, largest first, on a "
        "log scale. A healthy spectrum falls gently; a cliff means most directions are "
        "unused."),
    "alignment": (
        "Alignment",
        "How close the two views of the same image land (lower is closer). Contrastive "
        "methods pull views together, so alignment falls as they train."),
    "uniformity": (
        "Uniformity",
        "How evenly all embeddings cover the space (lower is more even). Pulling views "
        "together without keeping the images apart would make every embedding the same; "
        "uniformity is the pushing apart."),
    "anisotropy": (
        "Anisotropy",
        "The average similarity between the embeddings of different inputs. Near 1, "
        "everything points the same way, a cone; near 0, different inputs point in "
        "different directions."),
    "healthy": (
        "Healthy",
        "The embeddings are spread out and use many directions: images can be told apart."),
    "dimensional_collapse": (
        "Dimensional collapse",
        "The embeddings use only a few directions (effective rank below 10 % of what is "
        "possible), and so do the backbone's features under them. Images can be told apart "
        "only in a few ways, so much is lost. (A narrow embedding over a spread-out "
        "backbone is the projector doing its job, not collapse.)"),
    "complete_collapse": (
        "Complete collapse",
        "Every image gets nearly the same embedding (spread below a fifth of a healthy "
        "one). The network found the cheating answer to its task: if every output is the "
        "same, any two views match perfectly. Nothing useful is learned."),
    "not_learning": (
        "Not learning yet",
        "The banner shown when, after a third of the run, the kNN score is still no better "
        "than that of the same network with random weights: the training has not made the "
        "features better than none, however the loss looks."),
    "collapse_switch": (
        "Collapse switch",
        "A setting marked ⚠ in the form that, set one way, makes a method collapse, such as "
        "SimSiam without its stop-gradient or SimCLR at an extreme temperature. The demos "
        "flip them on purpose."),
    "pretext_accuracy": (
        "Pretext accuracy",
        "How often the network solves its invented task (which way is up, where a patch "
        "belongs), next to guessing. A solved task is not the goal; the features learned "
        "for it are."),
    "reconstruction": (
        "Reconstruction",
        "For methods that hide or spoil part of the input: what the network painted back, "
        "next to the original. Its error is measured where the input was hidden."),
    "bits_per_token": (
        "Bits per token",
        "How surprised a language model is by the next character or word of text it never "
        "saw (lower is better). The unigram line is guessing from how often each character "
        "occurs; a model below it has learned which characters follow which."),
    "masked_accuracy": (
        "Masked accuracy",
        "How often a masked-language model names the hidden token correctly, next to "
        "always guessing the most common one."),
    "recall": (
        "Recall@k",
        "For image-text matching: how often the right caption is among the k best matches "
        "of an image (or the right image among a caption's). Guessing gives k in the number "
        "of pairs."),
    "zero_shot": (
        "Zero-shot accuracy",
        "Classifying images by comparing them with sentences like 'a photo of a star', "
        "without training on any labels: the class whose sentence matches best wins."),
    "sweep": (
        "Sweep",
        "The same experiment run once per value of one setting, to see what that setting "
        "does: the results plot puts a final score of each run against the value."),
}

#: the entries each tab's "What is this?" shows, by the tab's label
TAB_ENTRIES: dict[str, tuple[str, ...]] = {
    "What it trains on": ("views", "self_supervised"),
    "Training curves": ("loss", "knn", "baseline", "not_learning", "std", "rank",
                        "pretext_accuracy", "bits_per_token", "masked_accuracy"),
    "Collapse": ("healthy", "dimensional_collapse", "complete_collapse", "collapse_switch",
                 "std", "rank", "spectrum", "alignment", "uniformity", "anisotropy"),
    "Embedding (UMAP)": ("umap", "embedding", "knn"),
    "Predictions && reconstructions": ("reconstruction", "pretext_accuracy", "chance"),
    "Predictions": ("bits_per_token", "masked_accuracy"),
    "Matching": ("recall", "zero_shot", "chance"),
    "Evaluate": ("knn", "baseline", "chance"),
    "Sweep": ("sweep", "knn", "rank"),
    "Runs": ("knn", "healthy", "dimensional_collapse", "complete_collapse"),
}


def entries_for(tab: str) -> list[tuple[str, str]]:
    """(title, text) of the entries a tab's help shows (all of them for an unknown tab)."""
    keys = TAB_ENTRIES.get(tab, tuple(GLOSSARY))
    return [GLOSSARY[k] for k in keys]


def markdown() -> str:
    """The glossary as the README holds it: one bullet per entry."""
    return "\n".join(f"- **{title}**: {text}" for title, text in GLOSSARY.values())
